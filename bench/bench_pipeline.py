"""Pipelining benchmark (issue 12): a batch's wall time and its time to the first final, each over its lower bound.

N topics, S scenes each, fake Veo latency L (the real SDK against tests/fakes/google_server.py), quota Q in flight
and R per minute, mock writers with W seconds per answer. Two paths: `stages` (the stage-by-stage pipeline:
every production's writers, then every clip, then every final), `local` (the local runner: reelcrew.tasks), and
`celery1` / `celery3` (that many `reelcrew worker` machines, each with its default pool per queue: one Celery
worker process per queue, sized like the local runner's pools; on a throwaway PostgreSQL and Redis from
tests/servers.py; the batch enqueued and followed in the ledger; their bound lets writers and renders run as many
at once as the workers' writers and render pools allow). `submit steps/clip`: submit_clip steps run per clip (the
asks for a Veo slot while waiting in the ledger's line, every TICK), a livelock's witness.

The lower bound is a schedule nothing can beat on this machine: the writers of WRITERS productions at once
(each production's LLM answers × W), each clip started as soon as its production's prompts exist and the quota
allows (Q in flight, R per minute, L each), each production's render (its duration as measured in this run)
once its clips are done, REELCREW_RENDER_CONCURRENCY at a time. The first final's bound is that production's
own: its writers, its clips alone under the quota, its render.

Usage: python bench/bench_pipeline.py [--topics N] [--scenes S] [--latency L] [--concurrent Q] [--rpm R]
       [--writer-latency W] [--paths stages,local,celery1,celery3]
"""

from __future__ import annotations

import argparse
import heapq
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]
TOPICS = ["how tea is made", "why the sky is blue", "how bees dance", "how rain forms", "why cats purr",
          "how bread rises", "how glass is made", "why leaves fall", "how tides work", "how maps are drawn"]


def clip_schedule(ready: list[float], latency: float, q: int, rpm: int, window: float = 60.0) -> list[float]:
    """Greedy: each clip (in order of readiness) starts when it is ready, a slot is free and the window allows."""
    ends: list[float] = []  # a heap of running clips' ends
    starts: list[float] = []
    out = []
    for at in ready:
        t = at
        while len(ends) >= q:
            t = max(t, heapq.heappop(ends))
        if len(starts) >= rpm:
            t = max(t, starts[-rpm] + window)
        starts.append(t)
        heapq.heappush(ends, t + latency)
        out.append(t + latency)
    return out


def bound(writing: list[float], scenes: int, latency: float, q: int, rpm: int, renders: list[float],
          writers: int, render_slots: int, fetch: float = 0.0) -> tuple[float, float]:
    """(batch lower bound, lower bound of production 0's own final)."""
    slots = [0.0] * writers
    ready = []
    for duration in writing:  # writers in order, `writers` at a time
        start = heapq.heappop(slots)
        ready.append(start + duration)
        heapq.heappush(slots, start + duration)
    clips = sorted((at, i) for i, at in enumerate(ready) for _ in range(scenes))
    ends = clip_schedule([at for at, _ in clips], latency, q, rpm)
    clips_done = [0.0] * len(writing)
    for (_, i), end in zip(clips, ends, strict=True):
        clips_done[i] = max(clips_done[i], end + fetch)
    render_free = [0.0] * render_slots
    finals = []
    for i in sorted(range(len(writing)), key=lambda k: clips_done[k]):
        start = max(clips_done[i], heapq.heappop(render_free))
        finals.append(start + renders[i])
        heapq.heappush(render_free, start + renders[i])
    own = writing[0] + clip_schedule([0.0] * scenes, latency, q, rpm)[-1] + fetch + renders[0]
    return max(finals), own


def run_path(path: str, args, fake) -> dict:
    from reelcrew import service
    from reelcrew.pipeline import Pipeline, Progress
    from reelcrew.results import ApprovalPolicy
    from reelcrew.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"GEMINI_API_KEY": "bench", "GOOGLE_GEMINI_BASE_URL": fake.url, "POLLING_INTERVAL": "0.1",
                           "NO_PROXY": "127.0.0.1", "REELCREW_STATE_DIR": str(Path(tmp) / "state"),
                           "REELCREW_LLM": "mock", "VEO3_MOCK_MODE": "false"})
        settings = load_settings(reelcrew_output_dir=Path(tmp) / "out", scenes=args.scenes,
                                 veo3_max_concurrent=args.concurrent, veo3_rpm=args.rpm,
                                 reelcrew_mock_writer_latency=args.writer_latency,
                                 reelcrew_writers_concurrency=args.writers)
        store = service.open_store(settings)
        prods = service.plan(settings, TOPICS[:args.topics], store)
        render_started: dict[str, float] = {}
        writing_started: dict[str, float] = {}

        def stage(pid: str, name: str) -> None:
            if name == "final":
                render_started[pid] = time.time()
            if name == "script":
                writing_started[pid] = time.time()

        progress = Progress(stage=stage)
        from reelcrew.tasks import Tasks
        from reelcrew.workers import QUEUES, warm_up

        warm_up(QUEUES)  # what a Celery worker loads before its first task: the paths compare pipelining alone

        steps = {"submit_clip": 0}
        submit_clip = Tasks.submit_clip

        def counted(self, step):
            steps["submit_clip"] += 1
            return submit_clip(self, step)

        Tasks.submit_clip = counted  # type: ignore[method-assign]
        start = time.time()
        if path == "stages":
            Pipeline(settings, store, progress).run(prods)
        else:
            service.run(settings, prods, progress=progress, policy=ApprovalPolicy(yes=True), store=store)
        wall = time.time() - start
        Tasks.submit_clip = submit_clip  # type: ignore[method-assign]
        finals = {}
        for prod in prods:
            [final] = [e for e in store.recent_events(prod.id, limit=500) if e["kind"] == "final"]
            finals[prod.id] = final["at"]
        renders = [finals[p.id] - render_started[p.id] for p in prods]
        # each production's writers as they took on this machine (W per answer plus CrewAI's own work), from the
        # moment its script started (not while it waited for a writer slot) to its prompts written
        written = {e["production_id"]: e["at"] for p in prods for e in store.recent_events(p.id, limit=500)
                   if e["kind"] == "stage" and e["stage"] == "prompts"}
        writing = [written[p.id] - writing_started[p.id] for p in prods]
        fetch = fastest_fetch(store, [p.id for p in prods], fake)
        if args.timeline:
            timeline(store, [p.id for p in prods], start)
        statuses = {store.production(p.id).status.value for p in prods}
        first_pid = min(finals, key=finals.__getitem__)
        first = finals[first_pid] - start
        index = [p.id for p in prods].index(first_pid)
        order = [index] + [i for i in range(len(prods)) if i != index]  # the first final's production first
        batch_bound, _ = bound(writing, args.scenes, args.latency, args.concurrent, args.rpm, renders,
                               args.writers, settings.reelcrew_render_concurrency, fetch)
        _, own_bound = bound([writing[i] for i in order], args.scenes, args.latency, args.concurrent, args.rpm,
                             [renders[i] for i in order], args.writers, settings.reelcrew_render_concurrency, fetch)
        store.close()
        return {"path": path, "wall": wall, "bound": batch_bound, "first": first, "first_bound": own_bound,
                "render": sum(renders) / len(renders), "statuses": statuses, "fetch": fetch,
                "writing": sum(writing) / len(writing),
                "steps": steps["submit_clip"] / (args.topics * args.scenes) if path != "stages" else None}


def fastest_fetch(store, ids: list[str], fake) -> float:
    """A clip's fetch (the poll that sees it done, download, validation): the fastest seen, from Veo's done time."""
    ended = {name: op["done_at"] for name, op in fake.ops.items()}
    fetches = []
    for pid in ids:
        done = {e["clip_index"]: e["at"] for e in store.recent_events(pid, limit=1000) if e["kind"] == "done"}
        for clip in store.production_clips(pid):
            if clip.operation_name in ended and clip.index in done:
                fetches.append(done[clip.index] - ended[clip.operation_name])
    return max(min(fetches), 0.0) if fetches else 0.0


def wait_for_workers(broker: str, nodes: int, timeout: float = 300.0) -> float:
    """Seconds until `nodes` Celery workers answer a ping (their start-up is not the batch's time)."""
    from reelcrew.workers import make_app

    app, started = make_app(broker), time.time()
    while time.time() - started < timeout:
        if len(app.control.ping(timeout=1.0)) >= nodes:
            return time.time() - started
    raise TimeoutError(f"fewer than {nodes} workers answered within {timeout:.0f} s")


def submit_steps(folders: list[Path]) -> int:
    """submit_clip steps the workers ran, from their JSON logs (`step start` lines)."""
    import json

    count = 0
    for folder in folders:
        log = folder / "out" / "reelcrew.log"
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            count += entry.get("event") == "step start" and entry.get("task") == "submit_clip"
    return count


def timeline(store, ids: list[str], start: float) -> None:
    """Each production's milestones in seconds from the start (`--timeline`): where a path's time goes."""
    for pid in ids:
        events = store.recent_events(pid, limit=1000)
        marks = [f"{e['kind']}{'' if e.get('clip_index') is None else e['clip_index']}"
                 f"{'/' + e['stage'] if e['kind'] in ('stage', 'progress') else ''}@{e['at'] - start:.1f}"
                 for e in sorted(events, key=lambda e: e["at"])
                 if e["kind"] in ("stage", "submitted", "done", "final") or
                 (e["kind"] == "progress" and e.get("stage") == "final")]
        print(f"  {pid[:24]}: {' '.join(marks)}", file=sys.stderr)


def run_celery(workers: int, args, fake) -> dict:
    """The same batch on `workers` Celery worker processes (real PostgreSQL and Redis, started here)."""
    import subprocess

    from reelcrew import service
    from reelcrew.service import queue
    from reelcrew.settings import load_settings
    from tests.servers import start_postgres, start_redis

    postgres, redis = start_postgres(), start_redis()
    procs: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GEMINI_API_KEY": "bench", "GOOGLE_GEMINI_BASE_URL": fake.url, "POLLING_INTERVAL": "0.1",
                   "NO_PROXY": "127.0.0.1", "REELCREW_LLM": "mock", "VEO3_MOCK_MODE": "false",
                   "REELCREW_DB": postgres.database(), "REELCREW_BROKER": redis.url, "SCENES": str(args.scenes),
                   "VEO3_MAX_CONCURRENT": str(args.concurrent), "VEO3_RPM": str(args.rpm),
                   "REELCREW_MOCK_WRITER_LATENCY": str(args.writer_latency),
                   "REELCREW_WRITERS_CONCURRENCY": str(args.writers)}
            os.environ.update(env)
            homes = []
            for n in range(workers):
                home = Path(tmp) / f"w{n}"
                home.mkdir()
                homes.append(home)
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "reelcrew", "worker", *args.worker_args.split()],
                    env={**os.environ, "HOME": str(home), "REELCREW_OUTPUT_DIR": str(home / "out")},
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            settings = load_settings(reelcrew_output_dir=Path(tmp) / "out", reelcrew_state_dir=Path(tmp) / "state",
                                     reelcrew_writers_concurrency=args.writers)
            store = service.open_store(settings)
            prods = service.plan(settings, TOPICS[:args.topics], store)
            shared = "--concurrency" in args.worker_args
            wait_for_workers(redis.url, workers * (1 if shared else 4))
            start = time.time()
            ids = queue.enqueue(settings, prods, store)
            queue.follow(store, ids, every=0.2)
            wall = time.time() - start
            if args.timeline:
                timeline(store, ids, start)
            events = {pid: store.recent_events(pid, limit=1000) for pid in ids}
            finals = {pid: max(e["at"] for e in ev if e["kind"] == "final") for pid, ev in events.items()}
            started = {pid: max(e["at"] for e in ev if e["kind"] == "progress" and e["stage"] == "final")
                       for pid, ev in events.items()}
            renders = [finals[pid] - started[pid] for pid in ids]
            # as on the local path: each production's writers from its script started to its prompts written
            # (the workers log the stages' starts as events), and the fastest fetch from Veo's done time
            writing = [min(e["at"] for e in events[pid] if e["kind"] == "stage" and e["stage"] == "prompts")
                       - min(e["at"] for e in events[pid] if e["kind"] == "progress" and e["stage"] == "script")
                       for pid in ids]
            fetch = fastest_fetch(store, ids, fake)
            statuses = {store.production(pid).status.value for pid in ids}
            first_pid = min(finals, key=finals.__getitem__)
            index = ids.index(first_pid)
            order = [index] + [i for i in range(len(ids)) if i != index]
            from reelcrew.runners.local import pool_sizes

            sizes = pool_sizes(settings)  # a worker's writers and render pools (the shared one with --concurrency)
            writer_slots = workers * (args.threads if shared else sizes["writers"])
            render_slots = workers * (args.threads if shared else sizes["render"])
            batch_bound, _ = bound(writing, args.scenes, args.latency, args.concurrent, args.rpm, renders,
                                   writer_slots, render_slots, fetch)
            _, own_bound = bound([writing[i] for i in order], args.scenes, args.latency, args.concurrent, args.rpm,
                                 [renders[i] for i in order], writer_slots, render_slots, fetch)
            store.close()
            return {"path": f"celery ({workers} worker{'s' if workers > 1 else ''})", "wall": wall,
                    "bound": batch_bound, "first": finals[first_pid] - start, "first_bound": own_bound,
                    "render": sum(renders) / len(renders), "statuses": statuses, "fetch": fetch,
                    "writing": sum(writing) / len(writing),
                    "steps": submit_steps(homes) / (args.topics * args.scenes)}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
        redis.cleanup()
        postgres.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--topics", type=int, default=4)
    ap.add_argument("--scenes", type=int, default=3)
    ap.add_argument("--latency", type=float, default=10.0)
    ap.add_argument("--concurrent", type=int, default=3)
    ap.add_argument("--rpm", type=int, default=600)
    ap.add_argument("--writer-latency", type=float, default=2.0)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--paths", default="stages,local")
    ap.add_argument("--worker-args", default="", help="`reelcrew worker`'s options for the Celery paths (default: "
                    "a pool per queue; e.g. \"--pool threads --concurrency 4\" for one shared pool)")
    ap.add_argument("--timeline", action="store_true", help="each production's milestones, on stderr")
    ap.add_argument("--threads", type=int, default=4, help="the shared pool's size when --worker-args has one")
    args = ap.parse_args()
    from tests.fakes.google_server import FakeGoogle, Script

    print(f"N={args.topics} S={args.scenes} L={args.latency}s Q={args.concurrent} R={args.rpm}/min "
          f"W={args.writer_latency}s/answer writers={args.writers}")
    print("| path | batch wall | its bound | ratio | first final | its bound | ratio | writers | fetch | render "
          "| submit steps/clip |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in args.paths.split(","):
        load_before = os.getloadavg()[0]
        with FakeGoogle(Script(latency=args.latency)) as fake:
            if path.startswith("celery"):
                r = run_celery(int(path.removeprefix("celery") or 1), args, fake)
            else:
                r = run_path(path, args, fake)
        print(f"| {r['path']} | {r['wall']:.1f} s | {r['bound']:.1f} s | {r['wall'] / r['bound']:.3f} | "
              f"{r['first']:.1f} s | {r['first_bound']:.1f} s | {r['first'] / r['first_bound']:.3f} | "
              f"{r['writing']:.1f} s | {r['fetch']:.1f} s | {r['render']:.1f} s | "
              f"{'-' if r['steps'] is None else format(r['steps'], '.1f')} |"
              + ("" if r["statuses"] == {"done"} else f" statuses {r['statuses']}")
              + f" load {load_before:.1f} → {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
