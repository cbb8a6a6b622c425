"""Backups that cannot cost money (issue 16) and `repair --ledger` (issue 10): the restore drill on SQLite and
PostgreSQL through the CLI and the real google-genai SDK against the fake Google server, a backup taken while
another process writes, a restore refused while a run works, a corrupt ledger rebuilt without paying, prune.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reelcrew import ledger_copy
from reelcrew.media import decodes, probe
from reelcrew.service.backup import open_backup
from reelcrew.store import Store
from tests.cli_helpers import cli, cli_in_process, start  # processes where a restore replaces the ledger
from tests.conftest import ROOT
from tests.video_helpers import ledger
from tests.waiting import wait_until


def finish_ops(fake) -> None:
    """Veo finishes every operation submitted so far."""
    for op in list(fake.ops.values()):
        op["done_at"] = time.time()


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)


def assert_valid_final(path: Path, clips: int) -> None:
    assert path.exists(), path
    info = probe(path)
    assert info.duration > 8 * clips - 1 and decodes(path) is None


@pytest.mark.slow
@pytest.mark.usefixtures("ledger_db")
def test_restore_drill_backup_mid_batch_more_submits_restore_resume_pays_no_clip_twice(real_env, fake, tmp_path):
    """A backup taken while a batch works; the batch finishes and a second one is killed mid-flight; the ledger is
    replaced by the backup and everything resumed: Veo sees no second submit for any clip, every final is valid."""
    out = tmp_path / "out"
    fake.script.latency = 600
    tea = start("--topic", "tea", "--scenes", "3", "--yes", "--json", "-o", str(out), env={"VEO3_MAX_CONCURRENT": "2"})
    store = ledger()
    wait_until(lambda: len(store.receipts()) >= 2, "the first two receipts", proc=tea)
    taken = cli("backup", "--json")  # online, while the batch polls its two operations
    assert taken.returncode == 0, taken.stderr
    backup = Path(json.loads(taken.stdout)["path"])
    assert json.loads(taken.stdout)["counts"]["receipts"] == 2
    assert backup.with_name(backup.name + ".sha256").exists()

    fake.script.latency = 0.2  # more clips are submitted after the backup: tea's third, then a whole new batch
    finish_ops(fake)
    stdout, stderr = tea.communicate(timeout=300)
    assert tea.returncode == 0, stderr[-2000:]
    fake.script.latency = 600
    coffee = start("--topic", "coffee", "--scenes", "2", "--yes", "-o", str(out))
    wait_until(lambda: len(store.receipts()) >= 5, "coffee's two receipts", proc=coffee)
    kill(coffee)
    assert fake.accepted == 5
    store.close()  # nothing of this process may hold the old ledger open while it is replaced

    restored = cli("restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert "the ledger as it was is kept in" in restored.stderr
    assert "ledger replaced by" in restored.stderr
    assert "production recreated from" in restored.stderr  # coffee was born after the backup: its manifest
    assert "its file matches the manifest's sha256" in restored.stderr  # tea's clips: not fetched again
    assert "2 clip(s) with a receipt will be re-attached" in restored.stderr  # coffee's, polled, never resubmitted
    store = ledger()
    assert len(store.receipts()) == 5  # two from the backup, three put back from the journal and manifests
    assert {p.topic for p in store.all_productions()} == {"tea", "coffee"}

    finish_ops(fake)
    fake.script.latency = 0.0
    resumed = cli("resume", "--yes", "--json")
    assert resumed.returncode == 0, resumed.stderr
    summaries = json.loads(resumed.stdout)["productions"]
    assert sorted((s["topic"], s["status"], s["clips_done"]) for s in summaries) == [("coffee", "done", 2),
                                                                                    ("tea", "done", 3)]
    assert fake.accepted == 5 and max(fake.accepted_by_prompt.values()) == 1  # no clip submitted twice
    for s in summaries:
        assert_valid_final(Path(s["final"]), s["clips_done"])
    assert len(store.cost_rows()) == 5  # each clip charged once in the cost ledger


@pytest.mark.usefixtures("ledger_db")
def test_a_backup_while_another_process_writes_is_one_consistent_snapshot(tmp_path, request):
    """A writer process commits receipts as fast as it can while `reelcrew backup` runs: the copy passes
    the integrity check, holds what its manifest counts, and never half a transaction (every receipt's clip
    carries its operation name, as `record_submit` commits them together)."""
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", f"""
import pathlib, sys
sys.path.insert(0, {str(ROOT)!r})
from reelcrew.models import VideoPrompt
from tests.video_helpers import ledger
store = ledger()
i = 0
while not pathlib.Path({str(stop)!r}).exists():
    i += 1
    clip = store.ensure_clip("writer", VideoPrompt(index=i, scene_index=i, prompt=f"shot {{i}}"),
                             "veo-3.1-fast-generate-001")
    store.record_submit(clip.key, "writer-host:1:x", f"models/m/operations/op{{i}}", 1, False, 60)
"""], stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    store = ledger()
    try:
        wait_until(lambda: len(store.receipts()) >= 20, "the writer's first receipts", proc=writer)
        taken = cli("backup", "--json", "--to", str(tmp_path / "b"))
        assert taken.returncode == 0, taken.stderr
        result = json.loads(taken.stdout)
        wait_until(lambda: len(store.receipts()) > result["counts"]["receipts"] + 10, "writes after the backup",
                   proc=writer)
    finally:
        stop.write_text("stop")
        writer.communicate(timeout=60)
    work = tmp_path / "unpacked"
    manifest = open_backup(Path(result["path"]), work)  # checksum and every member's sha256 verified
    assert manifest["counts"] == result["counts"] and manifest["counts"]["receipts"] >= 20
    if manifest["database"] == "sqlite":
        copy = work / "ledger.sqlite"
        with gzip.open(work / "ledger.sqlite.gz") as src, open(copy, "wb") as dst:
            shutil.copyfileobj(src, dst)
        assert ledger_copy.integrity(copy) == "ok"
        restored = Store(f"sqlite:///{copy}", journal=tmp_path / "unused.jsonl")
    else:
        url = request.getfixturevalue("postgres").database()
        ledger_copy.restore_postgres(url, work / "ledger.pgdump")  # one transaction: it loads whole or fails
        restored = Store(url, journal=tmp_path / "unused.jsonl")
    assert restored.counts() == manifest["counts"]
    with_receipt = [c for c in restored.all_clips() if c.operation_name]
    assert len(with_receipt) == manifest["counts"]["receipts"]
    assert manifest["counts"]["receipts"] < len(store.receipts())  # the writer went on while it was copied


@pytest.mark.slow
def test_restore_while_a_run_is_active_is_refused_with_the_fix(real_env, fake, tmp_path):
    fake.script.latency = 600
    run = start("--topic", "tea", "--scenes", "2", "--yes", "-o", str(tmp_path / "out"))
    store = ledger()
    try:
        wait_until(lambda: len(store.receipts()) >= 1, "a receipt", proc=run)
        taken = cli("backup", "--json")
        assert taken.returncode == 0, taken.stderr
        refused = cli("restore", json.loads(taken.stdout)["path"])
        assert refused.returncode == 2
        assert "restore refused: work is running" in refused.stderr and "fix:" in refused.stderr
        assert "then run `reelcrew restore` again" in refused.stderr
        assert run.poll() is None and len(store.receipts()) >= 1  # the run and its ledger were left alone
        assert not list(Path(json.loads(taken.stdout)["path"]).parent.glob("reelcrew-safety-*"))
    finally:
        kill(run)


@pytest.mark.slow
def test_repair_ledger_rebuilds_a_corrupt_ledger_and_pays_nothing_twice(real_env, fake, tmp_path):
    """Operations in flight, then the ledger file is damaged (SQLite's integrity check fails): `repair --ledger`
    keeps its bytes, rebuilds from the journal, the manifest and the stage files, and the resumed run re-attaches
    the two operations instead of paying for them again."""
    fake.script.latency = 600
    out = tmp_path / "out"
    run = start("--topic", "tea", "--scenes", "3", "--yes", "-o", str(out))
    store = ledger()
    wait_until(lambda: len(store.receipts()) >= 2, "two receipts", proc=run)
    kill(run)
    db = Path(store.url.removeprefix("sqlite:///"))
    store.close()
    for suffix in ("-wal", "-shm"):  # the last transactions are lost with the damage
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    data = bytearray(db.read_bytes())
    data[4096:] = os.urandom(len(data) - 4096)  # every page after the first is garbage
    db.write_bytes(bytes(data))
    assert ledger_copy.integrity(db) != "ok"

    plain = cli("status")
    assert plain.returncode == 2  # the damaged ledger is refused, not silently replaced
    repaired = cli("repair", "--ledger", "-o", str(out))
    assert repaired.returncode == 0, repaired.stderr
    assert "failed SQLite's integrity check" in repaired.stderr and "replayed from the journal" in repaired.stderr
    assert "2 clip(s) with a receipt will be re-attached" in repaired.stderr
    kept = list((db.parent / "backups").glob("reelcrew-corrupt-*/reelcrew.db"))
    assert len(kept) == 1 and kept[0].read_bytes() == bytes(data)
    assert len(ledger().receipts()) == 2 and fake.accepted == 2

    finish_ops(fake)
    fake.script.latency = 0.0
    resumed = cli("resume", "--yes", "--json", "-o", str(out))
    assert resumed.returncode == 0, resumed.stderr
    [summary] = json.loads(resumed.stdout)["productions"]
    assert summary["status"] == "done" and summary["clips_done"] == 3
    assert fake.accepted == 3 and max(fake.accepted_by_prompt.values()) == 1  # the third clip only was new
    assert_valid_final(Path(summary["final"]), 3)


@pytest.mark.slow
def test_prune_keeps_unfinished_clips_and_the_newest_backup_and_says_what_it_freed(tmp_path):
    out = tmp_path / "out"
    done = cli_in_process("--mock", "--topic", "tea", "--scenes", "2", "--json", "-o", str(out))
    assert done.returncode == 0, done.stderr
    waiting = cli_in_process("--mock", "--topic", "coffee", "--scenes", "2", "--until", "clips", "-o", str(out))
    assert waiting.returncode == 0, waiting.stderr  # stopped before its final: still unfinished
    store = ledger()
    coffee = next(p for p in store.all_productions() if p.topic == "coffee")
    from reelcrew.models import ProductionStatus

    store.set_production_status(coffee.id, ProductionStatus.paused, "final", "stopped before the final")
    for _ in range(2):
        assert cli_in_process("backup", "-o", str(out)).returncode == 0
        time.sleep(1.1)  # backups are named by the second
    tea_folder = Path(json.loads(done.stdout)["productions"][0]["folder"])
    dry = cli_in_process("prune", "--older-than", "0s", "--dry-run", "-o", str(out))
    assert dry.returncode == 0, dry.stderr
    assert "would remove" in dry.stderr and (tea_folder / "clips" / "clip-01.mp4").exists()
    pruned = cli_in_process("prune", "--older-than", "0s", "-o", str(out))
    assert pruned.returncode == 0, pruned.stderr
    assert "freed" in pruned.stderr and "KiB" in pruned.stderr
    assert not list((tea_folder / "clips").glob("*.mp4")) and (tea_folder / "final.mp4").exists()
    assert len(list((out / coffee.id / "clips").glob("*.mp4"))) == 2  # unfinished: untouched
    backups = sorted((Path(store.url.removeprefix("sqlite:///")).parent / "backups").glob("reelcrew-backup-*.tar"))
    assert len(backups) == 1  # the newest is always kept
    repaired = cli_in_process("repair", "-o", str(out))
    assert "regenerat" not in repaired.stderr  # a pruned file is not a loss to repair (nor a reason to pay)


@pytest.mark.slow
def test_doctor_says_when_the_last_backup_was_made_and_whether_journal_and_ledger_agree(tmp_path):
    out = tmp_path / "out"
    before = cli_in_process("doctor", "--mock", "-o", str(out), env={"COLUMNS": "250"})
    assert "none yet" in before.stdout and "agree" in before.stdout
    assert cli_in_process("--mock", "--topic", "tea", "--scenes", "1", "-o", str(out)).returncode == 0
    assert cli_in_process("backup", "-o", str(out)).returncode == 0
    store = ledger()
    with store.journal.open("a") as journal:  # a receipt the ledger never got (a restored older copy)
        journal.write(json.dumps({"at": time.time(), "clip_key": "k" * 32, "operation_name": "models/m/operations/x",
                                  "outcome": "accepted"}) + "\n")
    after = cli_in_process("doctor", "--mock", "-o", str(out), env={"COLUMNS": "250"})
    assert "reelcrew-backup-" in after.stdout and "h ago" in after.stdout
    assert "1 journalled receipt(s) missing from the ledger" in after.stdout and after.returncode == 2


def test_a_damaged_backup_is_refused_before_the_ledger_is_touched(tmp_path):
    from reelcrew.errors import InputError
    from reelcrew.models import VideoPrompt
    from reelcrew.service.backup import backup, restore
    from reelcrew.settings import load_settings

    settings = load_settings(reelcrew_output_dir=tmp_path / "out")
    store = ledger()
    clip = store.ensure_clip("p1", VideoPrompt(index=1, scene_index=1, prompt="x"), "veo-3.1-fast-generate-001")
    store.record_submit(clip.key, "h:1:x", "models/m/operations/a", 1, False, 0)  # its lease already over
    made = backup(settings, store)
    assert made.counts["receipts"] == 1 and made.checksum.read_text().split()[1] == made.path.name
    import tarfile

    with tarfile.open(made.path) as tar:  # a byte inside the ledger's copy (the middle of the archive may be padding)
        member = next(m for m in tar.getmembers() if m.name != "manifest.json")
    data = bytearray(made.path.read_bytes())
    data[member.offset_data + member.size // 2] ^= 0xFF
    made.path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="does not match its checksum"):
        restore(settings, made.path)
    made.checksum.unlink()  # without its .sha256, the members' own checksums still catch it
    with pytest.raises(InputError, match="missing or damaged|not a readable"):
        restore(settings, made.path)
    assert len(ledger().receipts()) == 1 and not list(settings.backup_dir.glob("reelcrew-safety-*"))


def test_backups_rotate_by_the_setting_and_media_missing_on_disk_comes_back_on_restore(tmp_path):
    from reelcrew.models import Production
    from reelcrew.service.backup import backup, restore
    from reelcrew.settings import load_settings

    settings = load_settings(reelcrew_output_dir=tmp_path / "out", reelcrew_backup_keep=2)
    store = ledger()
    folder = tmp_path / "out" / "p1"
    (folder / "clips").mkdir(parents=True)
    clip = folder / "clips" / "clip-01.mp4"
    clip.write_bytes(os.urandom(4096))  # stands for a paid clip
    store.upsert_production(Production(id="p1", topic="tea", language="en", scenes=1, aspect_ratio="16:9",
                                       style="s", folder=str(folder)))
    made = [backup(settings, store, with_media=True) for _ in range(3)]  # three within a second or two
    kept = sorted(settings.backup_dir.glob("reelcrew-backup-*.tar"))
    assert set(kept) == {made[1].path, made[2].path} and made[2].rotated == [made[0].path]
    assert not made[0].checksum.exists() and made[2].media_files == 1
    original = clip.read_bytes()
    clip.unlink()
    store.close()
    report = restore(settings, made[2].path)
    assert report.media_restored == 1 and clip.read_bytes() == original
    assert report.safety_copy is not None and report.safety_copy.name.startswith("reelcrew-safety-")
