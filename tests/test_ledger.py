"""One ledger for the machine (or the cluster): shared clip keys, folders, limits, imports and the journal.

Every test runs on the default SQLite ledger and on a real PostgreSQL server (`ledger_db`), through
the real google-genai SDK against the fake Google server or through the CLI (in separate processes where
several share one ledger).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from reelcrew.models import ClipStatus
from tests.cli_helpers import cli_in_process as cli  # processes of their own (`start`) where several share one ledger
from tests.cli_helpers import start
from tests.video_helpers import jobs, ledger, prompts, stack

pytestmark = pytest.mark.usefixtures("ledger_db")


@pytest.fixture
def real(real_env, monkeypatch):
    """The real SDK against the fake, with room for slow downloads on a busy machine (the Gemini client's
    timeout is SUBMIT_TIMEOUT; nothing here tests a late submit)."""
    monkeypatch.setenv("SUBMIT_TIMEOUT", "30")
    return real_env


def wait_for_receipts(store, count: int, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and len(store.receipts()) < count:
        time.sleep(0.05)
    assert len(store.receipts()) >= count, "the receipts never came"


def finish_all(fake) -> None:
    """Veo finishes every operation (while we were down)."""
    for op in fake.ops.values():
        op["done_at"] = time.time()
    fake.script.latency = 0.0


def test_same_key_twice_in_a_production_and_across_productions_is_paid_once(real, fake, tmp_path):
    fake.script.latency = 0.3
    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_max_concurrent=2)
    first = prompts(3)
    first[2].prompt = first[0].prompt  # scenes 1 and 3: equal prompt and seed, so one clip key
    second = prompts(1)  # another production sharing scene 1's clip
    batch = jobs(store, settings, first, out, pid="p1") + jobs(store, settings, second, out, pid="p2")
    clips = gen.run(batch)
    assert [c.status for c in clips] == [ClipStatus.done] * 4
    assert fake.accepted == 2 and max(fake.accepted_by_prompt.values()) == 1
    for job in batch:
        assert job.dest.exists() and job.dest.stat().st_size > 1000
    assert len(store.cost_rows()) == 2


def test_sibling_threads_asking_for_one_clip_pay_once(real, fake, tmp_path):
    """Two callers in one process (e.g. the CrewAI tool from two agents): each claim has its own owner."""
    fake.script.latency = 0.3
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    item = prompts(1)
    results = {}

    def ask(name):
        results[name] = gen.run(jobs(store, settings, item, out, pid=name))[0]

    threads = [threading.Thread(target=ask, args=(name,)) for name in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert {c.status for c in results.values()} == {ClipStatus.done}
    assert fake.accepted == 1
    assert all((out / name / "clips" / "clip-01.mp4").exists() for name in "abc")


def test_clips_are_reused_across_output_folders_without_paying_again(real, fake, tmp_path):
    settings, store, gen = stack(tmp_path / "a")
    gen.run(jobs(store, settings, prompts(2), tmp_path / "a"))
    settings, store, gen = stack(tmp_path / "b")
    again = gen.run(jobs(store, settings, prompts(2), tmp_path / "b", pid="other"))
    assert [c.status for c in again] == [ClipStatus.done] * 2
    assert fake.accepted == 2 and len(store.cost_rows()) == 2
    assert (tmp_path / "b" / "other" / "clips" / "clip-02.mp4").exists()
    assert not (tmp_path / "a" / "reelcrew.db").exists() and not (tmp_path / "b" / "reelcrew.db").exists()


def test_two_output_folders_share_one_in_flight_limit_and_one_rate(real, fake, tmp_path):
    fake.script.latency = 0.5
    fake.script.quota_limit, fake.script.quota_window = 2, 1.5  # Veo's own limit: 2 a window, else 429
    # ours: 2 per 3 s, machine-wide
    env = {"VEO3_MAX_CONCURRENT": "2", "VEO3_RPM": "2", "VEO3_RATE_WINDOW_SECONDS": "3"}
    procs = [start("--topic", topic, "--scenes", "3", "--yes", "--until", "clips", "--json", "-o",
                   str(tmp_path / folder), env=env) for topic, folder in (("tea", "a"), ("coffee", "b"))]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    assert fake.accepted == 6 and max(fake.accepted_by_prompt.values()) == 1
    assert fake.max_in_flight <= 2
    assert fake.submit_attempts == 6  # the shared rate gate kept both folders under Veo's limit: no 429


def test_two_output_folders_share_one_daily_budget(real, fake, tmp_path):
    budget = {"REELCREW_DAILY_BUDGET_USD": "2.40"}  # three 8 s clips at $0.80
    first = cli("--topic", "tea", "--scenes", "2", "--yes", "--json", "-o", str(tmp_path / "a"), env=budget)
    assert first.returncode == 0, first.stderr
    second = cli("--topic", "coffee", "--scenes", "2", "--yes", "--json", "-o", str(tmp_path / "b"), env=budget)
    prod = json.loads(second.stdout)["productions"][0]
    assert second.returncode == 1 and prod["status"] == "paused"
    assert prod["clips_done"] == 1 and prod["clips_paused"] == 1 and "daily budget" in prod["error"]
    assert fake.accepted == 3


def test_a_production_rendered_elsewhere_exits_0_and_says_where_the_final_is(real, fake, tmp_path):
    first = cli("--topic", "tea", "--scenes", "1", "--yes", "--json", "-o", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    again = cli("--topic", "tea", "--scenes", "1", "--yes", "--json", "-o", str(tmp_path / "b"))
    assert again.returncode == 0, again.stderr
    final = tmp_path / "a" / json.loads(first.stdout)["productions"][0]["id"] / "final.mp4"
    assert f"already rendered: {final}" in again.stderr
    assert json.loads(again.stdout)["productions"][0]["final"] == str(final)
    assert fake.accepted == 1 and not list((tmp_path / "b").glob("*/final.mp4"))


@pytest.mark.servers
def test_three_processes_on_one_batch_share_two_slots_and_render_each_production_once(real, fake, tmp_path,
                                                                                     ledger_db, capsys):
    if ledger_db != "postgresql":
        pytest.skip("the three-process figure is measured on PostgreSQL (the SQLite run is the two-process test)")
    fake.script.latency = 0.4
    topics = ["tea", "coffee", "rice", "silk"]
    args = [a for t in topics for a in ("--topic", t)] + ["--scenes", "3", "--yes", "--json"]
    procs = [start(*args, "-o", str(tmp_path / f"out{i}"), env={"VEO3_MAX_CONCURRENT": "2"}) for i in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-1500:] for o in outs]
    finals = sorted(p.relative_to(tmp_path) for p in tmp_path.glob("out*/*/final.mp4"))
    assert len(finals) == len(topics)  # every production rendered, each in exactly one folder
    assert len({f.parts[1] for f in finals}) == len(topics)
    store = ledger()
    for prod in store.all_productions():
        assert sum(1 for e in store.recent_events(prod.id, 500) if e["kind"] == "final") == 1
    assert fake.accepted == 3 * len(topics) and max(fake.accepted_by_prompt.values()) == 1
    assert fake.max_in_flight <= 2
    with capsys.disabled():
        print(f"\nthree processes, {len(topics)} productions x 3 clips: accepted submits {fake.accepted}, "
              f"submit attempts {fake.submit_attempts}, max in flight at the server {fake.max_in_flight}, "
              f"folders used {sorted({f.parts[0] for f in finals})}")


def test_an_older_folder_ledger_with_operations_in_flight_is_imported_and_resumed_without_new_submits(
        real, fake, tmp_path):
    fake.script.latency = 120
    out = tmp_path / "old"
    old_db = out / "reelcrew.db"  # where ledgers lived before the state folder
    proc = start("--topic", "tea", "--scenes", "3", "--yes", "-o", str(out), env={"REELCREW_DB": str(old_db)})
    from reelcrew.store import Store

    deadline = time.time() + 60
    while not old_db.exists() and time.time() < deadline:
        time.sleep(0.05)
    watcher = Store(f"sqlite:///{old_db}")
    wait_for_receipts(watcher, 2)
    watcher.close()  # the import renames this file; the CLI runs in this process, where SQLite's locks are shared
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert fake.accepted == 2
    finish_all(fake)
    resumed = cli("--topic", "tea", "--scenes", "3", "--yes", "--json", "-o", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "imported the older ledger" in resumed.stderr
    assert fake.accepted == 3  # the two in flight were re-attached from their imported receipts
    assert (out / "reelcrew.db.imported").exists() and not old_db.exists()
    store = ledger()
    assert len(store.receipts()) == 3 and len(store.cost_rows()) == 3
    by_hand = cli("ledger", "import", str(out / "reelcrew.db.imported"))  # again, by hand: nothing doubles
    assert by_hand.returncode == 0, by_hand.stderr
    assert len(store.receipts()) == 3 and len(store.cost_rows()) == 3


def test_a_lost_ledger_is_rebuilt_from_the_receipts_journal_without_paying_again(real, fake, tmp_path,
                                                                                  ledger_db):
    if ledger_db != "sqlite":
        pytest.skip("losing the ledger is simulated by deleting the SQLite file")
    fake.script.latency = 120
    out = tmp_path / "out"
    proc = start("--topic", "tea", "--scenes", "3", "--yes", "-o", str(out))
    store = ledger()
    wait_for_receipts(store, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    journal = store.journal
    db = Path(store.url.removeprefix("sqlite:///"))
    store.close()
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)
    assert len(journal.read_text().splitlines()) == 2
    repaired = cli("repair", "-o", str(out))
    assert repaired.returncode == 0 and "replayed from the journal" in repaired.stderr
    finish_all(fake)
    again = cli("--topic", "tea", "--scenes", "3", "--yes", "--json", "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert fake.accepted == 3  # the two journalled operations were re-attached, not paid again


def test_claims_have_their_own_owners_and_leases_that_renew_and_expire(tmp_path):
    from reelcrew.files import new_owner
    from reelcrew.leases import Heartbeat
    from reelcrew.models import VideoPrompt

    store = ledger()
    key = store.ensure_clip("p1", VideoPrompt(index=1, scene_index=1, prompt="x"), "veo-3.1-fast-generate-001").key

    def claim(owner, ttl=60.0):
        return store.claim_clip(key, owner, ttl, 2, 0.0, lambda spend: None, 0.0)[0]

    remote = "another-host:4242:0badc0de"  # alive as far as we can tell: only its lease expiry frees the clip
    assert claim(remote, ttl=0.5) == "submit"
    assert claim(new_owner()) == "wait"  # a claim of this very process is not "mine" either
    beat = Heartbeat(store, ttl=0.6)
    beat.hold(remote)
    first = store.clip(key).lease_until
    deadline = time.time() + 30
    while store.clip(key).lease_until <= first and time.time() < deadline:
        time.sleep(0.05)
    assert store.clip(key).lease_until > first  # renewed while held
    beat.drop(remote)
    beat.stop()
    time.sleep(0.7)  # the lease (0.6 s) runs out
    assert claim(new_owner()) == "submit"
    assert store.clip(key).possible_duplicate  # the remote intent may have reached Veo: flagged, never hidden
