"""Celery workers as on several machines: each worker process has its own HOME and output folder and shares only
PostgreSQL (the ledger), Redis (the broker and the rate gate) and the fake Google server; Beat reconciles.

Real mode end to end: the real google-genai SDK in every worker against tests/fakes/google_server.py. What these
prove is what a studio would notice: exactly one accepted (paid) submit per clip, never more operations in flight
than VEO3_MAX_CONCURRENT, every final a valid video, a killed worker or a restarted Redis costing time, not money.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest

from reelcrew.media import probe
from tests.conftest import FAST
from tests.waiting import wait_until

pytestmark = [pytest.mark.servers, pytest.mark.slow]

REELCREW = [sys.executable, "-m", "reelcrew"]


class Cluster:
    """PostgreSQL + Redis + the fake; worker, beat and CLI processes, each its own machine-like folder."""

    def __init__(self, tmp_path: Path, db: str, broker: str, fake, **env: str):
        self.tmp, self.fake, self.procs = tmp_path, fake, []
        self.env = {"REELCREW_DB": db, "REELCREW_BROKER": broker, "GEMINI_API_KEY": "test-key-not-secret",
                    "GOOGLE_GEMINI_BASE_URL": fake.url, "REELCREW_LLM": "mock", "VEO3_MOCK_MODE": "false",
                    "REELCREW_RECONCILE_SECONDS": "1", "REELCREW_LOST_AFTER_SECONDS": "3",
                    "REELCREW_TASK_RETRIES": "1", "PYTHONUNBUFFERED": "1", **FAST, **env}

    def machine_env(self, name: str, **extra: str) -> dict[str, str]:
        home = self.tmp / name
        (home / "out").mkdir(parents=True, exist_ok=True)
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("REELCREW_", "VEO3_", "GEMINI_", "GOOGLE_"))}
        return {**keep, **self.env, "HOME": str(home), "REELCREW_OUTPUT_DIR": str(home / "out"), **extra}

    def start(self, name: str, *args: str, **extra: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([*REELCREW, *args], env=self.machine_env(name, **extra), cwd=self.tmp / name,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        proc.name = name  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def worker(self, name: str, *queues: str) -> subprocess.Popen:
        extra = ("--queues", ",".join(queues)) if queues else ()
        return self.start(name, "worker", "--pool", "threads", "--concurrency", "4", *extra)

    def beat(self) -> subprocess.Popen:
        return self.start("beat", "beat")

    def cli(self, *args: str, timeout: float = 420) -> subprocess.CompletedProcess:
        return subprocess.run([*REELCREW, *args], env=self.machine_env("api"), cwd=self.tmp / "api",
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def store(self):
        from reelcrew.store import Store

        return Store(self.env["REELCREW_DB"], journal=self.tmp / "test-journal.jsonl")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n" + (self.tmp / f"{p.name}.log").read_text(errors="replace")[-3000:]
                         for p in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def cluster(tmp_path, postgres, redis, fake):
    made = Cluster(tmp_path, postgres.database(), redis.url, fake, VEO3_MAX_CONCURRENT="2")
    yield made
    made.stop()


def topics(n: int) -> list[str]:
    return [arg for i in range(n) for arg in ("--topic", f"how {['tea', 'bread', 'glass', 'paper'][i]} is made")]


def assert_paid_once_and_valid(cluster: Cluster, summaries: list[dict], clips: int) -> None:
    fake = cluster.fake
    assert fake.accepted == clips, f"{fake.accepted} paid submits for {clips} clips\n{cluster.logs()}"
    assert set(fake.accepted_by_prompt.values()) == {1}
    assert fake.max_in_flight <= 2
    for s in summaries:
        assert s["status"] == "done", (s, cluster.logs())
        info = probe(s["final"])
        assert info.duration > 0 and info.width > 0


def test_three_workers_share_one_quota_through_a_storm_and_a_redis_restart(cluster, redis, s3):
    """4 topics x 4 scenes on three worker machines sharing only PostgreSQL, Redis and the S3 store; a quota storm
    (429s per minute-window) and Redis restarted once clips are on their way: exactly one paid submit per clip,
    <= VEO3_MAX_CONCURRENT in flight, finals valid, every clip and final in the store."""
    cluster.env["REELCREW_ARTIFACTS"] = f"s3://{s3.bucket}/{s3.prefix}"
    cluster.fake.script.quota_limit, cluster.fake.script.quota_window = 3, 1.0
    cluster.fake.script.submit_faults = deque(["429"] * 4 + ["429-bare"] * 2)  # the storm's first submits
    cluster.fake.script.latency = 1.0
    for name in ("w1", "w2", "w3"):
        cluster.worker(name)
    cluster.beat()
    run = subprocess.Popen([*REELCREW, "run", *topics(4), "--scenes", "4", "--yes", "--json"],
                           env=cluster.machine_env("api"), cwd=cluster.tmp / "api", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    wait_until(lambda: cluster.fake.accepted >= 4, "clips on their way", timeout=240, proc=run)
    redis.restart()  # every queued and scheduled message is lost: the ledger's chains bring the work back
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-3000:] + cluster.logs()
    summaries = json.loads(out)["productions"]
    assert len(summaries) == 4
    assert_paid_once_and_valid(cluster, summaries, 16)
    assert cluster.fake.submit_attempts >= 16 + 6  # the storm was there: refused submits, each tried again
    stored = {o["Key"] for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket)
              for o in page.get("Contents", [])}
    assert len({k for k in stored if k.startswith(f"{s3.prefix}/clips/")}) == 16
    assert all(f"{s3.prefix}/productions/{s['id']}/final.mp4" in stored for s in summaries)
    resent = [e for e in cluster.store().recent_events(limit=2000) if e["kind"] == "reconcile"]
    assert resent  # the Redis restart lost messages; the reconciler sent their steps again
    print(f"storm figures: {cluster.fake.accepted} paid submits for 16 clips, {cluster.fake.submit_attempts} submit "
          f"attempts, max {cluster.fake.max_in_flight} in flight, {len(resent)} steps re-sent by the reconciler")


def clip_submitting(store) -> str | None:
    """The owner (host:pid:random) of a clip claim in the middle of its submit, if any."""
    for clip in store.all_clip_rows():
        if clip["status"] == "submitting" and clip["lease_owner"]:
            return clip["lease_owner"]
    return None


def rendering(store) -> str | None:
    """The runner of a render step running now, if any."""
    for row in store.task_chains():
        if row["runner"] and json.loads(row["step"])["task"] == "render":
            return row["runner"]
    return None


def kill_owner(cluster: Cluster, owner: str) -> str:
    """kill -9 the worker process behind a claim owner (host:pid:random), and reap it as a supervisor would (a
    zombie's pid still answers, and the ledger would take it for alive); returns the worker's name."""
    pid = int(owner.rsplit(":", 2)[1])
    proc = next(p for p in cluster.procs if p.pid == pid)
    proc.kill()
    proc.wait(timeout=30)
    return proc.name  # type: ignore[attr-defined]


def test_kill_9_while_submitting_and_while_rendering_costs_no_second_payment(cluster):
    """A worker killed inside a submit (the request accepted, its answer not yet back), another killed inside a
    render: the batch completes on the workers left, and no clip is paid twice (one possible duplicate is allowed
    only for the killed submit, where the receipt could not be committed)."""
    cluster.fake.script.submit_faults = deque(["held"])  # the first submit is accepted, its answer held
    cluster.worker("w1", "writers", "clips", "maintenance")  # no renders here: w3 (render only) takes them
    cluster.worker("w2", "writers", "clips", "maintenance")
    cluster.beat()
    run = subprocess.Popen([*REELCREW, "run", *topics(2), "--scenes", "2", "--yes", "--json"],
                           env=cluster.machine_env("api"), cwd=cluster.tmp / "api", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    store = cluster.store()
    owner = wait_until(lambda: clip_submitting(store), "a submit in flight", timeout=240, proc=run)
    assert kill_owner(cluster, owner) in ("w1", "w2")
    cluster.fake.held.set()
    cluster.worker("w3", "render")  # the renders wait for this one, which is killed while it renders
    runner = wait_until(lambda: rendering(store), "a render running", timeout=300, proc=run)
    assert kill_owner(cluster, runner) == "w3"
    cluster.worker("w4")
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-3000:] + cluster.logs()
    summaries = json.loads(out)["productions"]
    for s in summaries:
        assert s["status"] == "done", (s, cluster.logs())
        probe(s["final"])
    paid_twice = [p for p, n in cluster.fake.accepted_by_prompt.items() if n > 1]
    assert len(paid_twice) <= 1 and cluster.fake.accepted <= 5
    flagged = [r for r in store.all_clip_rows() if r["possible_duplicate"]]
    assert len(paid_twice) <= len(flagged) <= 1
    print(f"kill figures: {cluster.fake.accepted} paid submits for 4 clips, {len(paid_twice)} clip(s) paid twice, "
          f"{len(flagged)} flagged possible duplicate")


def test_a_task_delivered_twice_does_its_work_once(cluster):
    """The same messages twice (a redelivery after a lost ack): one paid submit per clip, one final."""
    from reelcrew.tasks import Step
    from reelcrew.workers import make_app, send_steps

    cluster.worker("w1")
    planned = cluster.cli("run", *topics(1), "--scenes", "2", "--yes", "--json", "--detach")
    assert planned.returncode == 0, planned.stderr
    pid = json.loads(planned.stdout)["queued"][0]
    app = make_app(cluster.env["REELCREW_BROKER"])
    send_steps(app, [Step(task="write", production_id=pid)])  # the same write, delivered again
    store = cluster.store()
    wait_until(lambda: store.production(pid).status.value == "done", "the production to be done", timeout=300)
    keys = [c.key for c in store.production_clips(pid)]
    send_steps(app, [Step(task="submit_clip", production_id=pid, clip_key=keys[0], clip_index=1),
                     Step(task="render", production_id=pid)])  # late duplicates of finished steps
    finished = {e["id"] for e in store.recent_events(pid, limit=500) if e["kind"] == "stage"}
    wait_until(lambda: not store.task_chains(), "the duplicates to be consumed", timeout=120)
    assert cluster.fake.accepted == 2 and set(cluster.fake.accepted_by_prompt.values()) == {1}
    assert store.production(pid).status.value == "done"
    assert {e["id"] for e in store.recent_events(pid, limit=500) if e["kind"] == "stage"} == finished


def test_a_writer_that_keeps_failing_lands_in_the_dead_letters_and_is_retried_from_there(cluster):
    from reelcrew.mock_writer import write_prompts, write_script, write_seo
    from reelcrew.settings import load_settings

    cluster.env["REELCREW_LLM"] = "gemini"  # against the fake: its default answer ("{}") is not a script
    cluster.worker("w1")
    planned = cluster.cli("run", "--topic", "how tea is made", "--scenes", "2", "--yes", "--json", "--detach")
    assert planned.returncode == 0, planned.stderr
    pid = json.loads(planned.stdout)["queued"][0]
    store = cluster.store()
    letter = wait_until(lambda: store.dead_letters(), "a dead letter", timeout=180)[0]
    assert letter["task"] == "reelcrew.write" and letter["production_id"] == pid and letter["attempts"] == 2
    listed = cluster.cli("dead", "list", "--json")
    assert [d["id"] for d in json.loads(listed.stdout)["dead_letters"]] == [letter["id"]]
    assert store.production(pid).status.value == "failed"

    style = load_settings(reelcrew_llm="mock").style
    script = write_script("how tea is made", "en", 2, 8, style)
    cluster.fake.script.text_answers = deque([script.model_dump_json(),
                                              write_seo(script, "how tea is made").model_dump_json(),
                                              write_prompts(script, style, "16:9", "720p").model_dump_json()])
    retried = cluster.cli("dead", "retry", str(letter["id"]))
    assert retried.returncode == 0, retried.stderr
    assert cluster.cli("dead", "retry", str(letter["id"])).returncode == 2  # once
    wait_until(lambda: store.production(pid).status.value == "done", "the retried production to be done",
               timeout=300)
    assert store.dead_letters() == [] and cluster.fake.accepted == 2


def test_serve_with_a_broker_enqueues_and_a_worker_makes_it(cluster, monkeypatch, tmp_path):
    """`reelcrew serve` with REELCREW_BROKER runs nothing itself: the worker makes the production; the API lists
    the dead letters and lets an operator (not a viewer) re-queue one."""
    import threading

    from tests.web_helpers import LiveServer

    cluster.env.update(VEO3_MOCK_MODE="true")
    for name, value in cluster.env.items():
        monkeypatch.setenv(name, value)
    cluster.worker("w1")
    cluster.beat()  # as deployed: a step lost on its way to the worker is sent again from the ledger
    with LiveServer(tmp_path / "api-out") as live:
        client = live.client()
        answer = client.post("/api/productions", json={"topics": ["how tea is made"], "mock": True, "scenes": 2})
        assert answer.status_code == 202, answer.text
        pid = answer.json()["productions"][0]["id"]
        try:
            done = live.wait_status(client, pid, "done", timeout=240)
        except BaseException:  # pytest.fail: show what the worker and beat said
            print(cluster.logs())
            raise
        assert [c["status"] for c in done["clips"]] == ["done", "done"] and "final.mp4" in done["files"]
        assert not [t for t in threading.enumerate() if t.name.startswith("run-")]  # no local runner in serve

        letter = live.studio.store.add_dead_letter("reelcrew.render", {"step": {"task": "render",
                                                                                "production_id": pid}},
                                                   "RuntimeError: ffmpeg died", 6, pid)
        assert [d["id"] for d in client.get("/api/dead").json()["dead_letters"]] == [letter]
        viewer = live.client(live.token("vic", "viewer"))
        assert viewer.post(f"/api/dead/{letter}/retry").status_code == 403
        retried = client.post(f"/api/dead/{letter}/retry")
        assert retried.status_code == 202 and retried.json()["task"] == "reelcrew.render"
        assert client.get("/api/dead").json()["dead_letters"] == []
        assert client.post(f"/api/dead/{letter}/retry").status_code in (400, 404, 409, 422)
