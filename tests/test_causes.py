"""True causes through the CLI (issue 10): a full disk, a read-only folder or a permission problem is named as such,
the ledger is never called corrupt unless SQLite's integrity check says so, no message ever advises discarding it,
and no receipt is lost; `--json` errors; read-only `status`/`cost`; a mistyped `resume -o`; a kill -9 mid-render
leaves no ffmpeg behind and the next start sweeps its temp files.

A full disk is a real one: a small tmpfs (mounting needs root; without it those tests skip and say why).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.cli_helpers import cli  # real processes: a corrupt file, TMPDIR and kill -9 are read per process
from tests.test_pipeline_cli import RUN, summary
from tests.waiting import wait_until

# what a message must never advise: discarding, moving aside or deleting the ledger (following it pays twice)
DISCARDING = ("corrupt", "aside", "discard", "delete", "rm ", "remove the ledger")


def never_discards(text: str) -> None:
    lowered = text.lower()
    for word in DISCARDING:
        assert word not in lowered, f"{word!r} in: {text}"


@pytest.fixture
def small_disk(tmp_path):
    """`small_disk(name, size)`: a folder that is a tmpfs of that size, unmounted after the test."""
    mounts: list[Path] = []

    def make(name: str, size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a real full disk needs a small tmpfs, and mounting one needs root")
        path = tmp_path / name
        path.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
        mounts.append(path)
        return path

    yield make
    for path in reversed(mounts):
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def read_only(tmp_path):
    """`read_only(folder)`: as root a read-only bind mount of the folder (EROFS), otherwise chmod a-w (EACCES)."""
    mounts: list[Path] = []
    chmodded: list[Path] = []

    def make(folder: Path) -> str:
        if os.geteuid() == 0:
            for args in (["mount", "--bind", str(folder), str(folder)],
                         ["mount", "-o", "remount,ro,bind", str(folder)]):
                done = subprocess.run(args, capture_output=True, text=True)
                if done.returncode != 0:
                    pytest.skip(f"cannot make a read-only bind mount here: {done.stderr.strip()}")
                if not mounts or mounts[-1] != folder:
                    mounts.append(folder)
            return "read-only"
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
            chmodded.append(path)
        return "permission denied"

    yield make
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=False)
    for path in chmodded:
        path.chmod(path.stat().st_mode | 0o200)


def fill(disk: Path, leave: int = 0) -> None:
    """Fill the disk, leaving about `leave` bytes free (0: until the kernel says ENOSPC)."""
    with open(disk / "filler", "wb", buffering=0) as fh:
        size = max(shutil.disk_usage(disk).free - leave, 0)
        fh.write(b"\0" * size)
        if leave == 0:
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass


def receipt_rows(db: Path) -> list[tuple]:
    """The ledger's receipts, read without writing anything (the disk may be full)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT clip_key, operation_name, outcome FROM receipts ORDER BY id").fetchall()
    finally:
        conn.close()


def error_json(result) -> dict:
    error = json.loads(result.stdout)
    assert set(error) == {"error", "fix", "exit_code"} and error["exit_code"] == result.returncode, result.stdout
    return error


@pytest.mark.slow
def test_full_ledger_disk_after_a_kill_is_named_as_such_never_corrupt_and_loses_no_receipt(real_env, fake,
                                                                                          small_disk, monkeypatch):
    """The issue's case: killed with operations in flight, then the ledger's disk fills up. Before, the next run
    called the ledger corrupt and advised moving it aside, which paid again for clips Veo had already made."""
    state = small_disk("state", "16m")
    monkeypatch.setenv("REELCREW_STATE_DIR", str(state))
    fake.script.latency = 15  # the operations are still in flight when the run is killed
    journal = state / "reelcrew.receipts.jsonl"
    run = subprocess.Popen([*RUN, "--topic", "tea", "--scenes", "2", "--yes"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    wait_until(lambda: journal.exists() and len(journal.read_text().splitlines()) == 2, "two receipts", proc=run)
    run.send_signal(signal.SIGKILL)
    run.wait()
    journal_before, receipts_before = journal.read_text().splitlines(), receipt_rows(state / "reelcrew.db")
    assert len(journal_before) == len(receipts_before) == fake.accepted == 2

    fill(state)
    for args in (["--topic", "tea", "--scenes", "2", "--yes", "--json"], ["resume", "--yes", "--json"]):
        result = cli(*args)
        assert result.returncode == 2, result.stderr
        error = error_json(result)
        assert "full" in error["error"] and str(state) in error["error"] and "free" in error["error"]
        assert "MiB" in error["fix"] and "REELCREW_STATE_DIR" in error["fix"]
        never_discards(result.stdout + result.stderr)
    status = cli("status", "--json")  # reading needs no room
    assert status.returncode == 0, status.stderr
    assert [p["topic"] for p in json.loads(status.stdout)["productions"]] == ["tea"]
    assert journal.read_text().splitlines() == journal_before
    assert receipt_rows(state / "reelcrew.db") == receipts_before

    (state / "filler").unlink()
    done = cli("resume", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert summary(done)[0]["status"] == "done" and fake.accepted == 2  # re-attached by receipt: nothing re-paid


@pytest.mark.slow
def test_a_disk_that_fills_while_veo_answers_a_submit_still_gets_its_receipt(real_env, fake, small_disk,
                                                                              monkeypatch):
    """The ledger keeps a small reserve beside it: a receipt that meets a full disk takes it, so an accepted
    (charged) submit is never forgotten and resubmitted. Without it the receipt was lost (journal and ledger)."""
    state = small_disk("state", "16m")
    monkeypatch.setenv("REELCREW_STATE_DIR", str(state))
    fake.script.submit_faults.append("held")
    run = subprocess.Popen([*RUN, "--topic", "tea", "--scenes", "1", "--yes", "--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    wait_until(lambda: fake.accepted == 1, "Veo to accept the submit", proc=run)
    assert (state / "reelcrew.db.reserve").exists()
    fill(state)
    fake.held.set()
    out, err = run.communicate(timeout=180)
    # the reserve paid for the receipt; the run then finishes on what is left, or stops naming the full disk
    assert not (state / "reelcrew.db.reserve").exists()
    assert run.returncode in (0, 2), err
    if run.returncode == 2:
        assert "full" in json.loads(out)["error"]
    never_discards(out + err)
    journal = [json.loads(line) for line in (state / "reelcrew.receipts.jsonl").read_text().splitlines()]
    assert {line["outcome"] for line in journal} == {"accepted"}
    assert [row[2] for row in receipt_rows(state / "reelcrew.db")] == ["accepted"]

    (state / "filler").unlink()
    done = cli("--topic", "tea", "--scenes", "1", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert summary(done)[0]["status"] == "done" and fake.accepted == 1  # re-attached, not resubmitted
    assert (state / "reelcrew.db.reserve").exists()  # kept again once there is room


@pytest.mark.slow
def test_full_output_disk_at_the_final_names_the_disk_and_the_space_it_needs(tmp_path, small_disk):
    out = small_disk("out", "32m")
    args = ["--mock", "--topic", "tea", "--scenes", "3", "-o", str(out), "--json"]
    assert cli(*args, "--until", "clips").returncode == 0
    clips = sum(f.stat().st_size for f in out.glob("*/clips/*.mp4"))
    fill(out, leave=64 * 1024)  # room to start (stage files, the log), not for a final of ~clips' size
    assert clips > 4 * 64 * 1024

    result = cli(*args)
    assert result.returncode == 2, result.stderr
    error = error_json(result)
    assert "full" in error["error"] and str(out) in error["error"] and "needed" in error["error"]
    assert "--output-dir" in error["fix"]
    never_discards(result.stdout + result.stderr)
    assert not list(out.rglob("final.mp4")) and not list(out.rglob(".*.part*"))

    (out / "filler").unlink()
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert summary(again)[0]["status"] == "done" and list(out.glob("*/final.mp4"))


@pytest.mark.slow
def test_status_and_cost_work_on_a_read_only_folder_and_a_run_there_names_it(tmp_path, read_only, monkeypatch):
    root = tmp_path / "shared"
    state, out = root / "state", root / "out"
    monkeypatch.setenv("REELCREW_STATE_DIR", str(state))
    assert cli("--mock", "--topic", "tea", "--scenes", "1", "--until", "prompts", "-o", str(out)).returncode == 0
    cause = read_only(root)

    status = cli("status", "-o", str(out), "--json")
    assert status.returncode == 0, status.stderr
    assert [p["topic"] for p in json.loads(status.stdout)["productions"]] == ["tea"]
    cost = cli("cost", "-o", str(out), "--json")
    assert cost.returncode == 0 and json.loads(cost.stdout)["total_usd"] == 0
    run = cli("--mock", "--topic", "coffee", "--scenes", "1", "-o", str(out), "--json")
    assert run.returncode == 2 and cause in error_json(run)["error"]
    never_discards(run.stdout + run.stderr)


@pytest.mark.slow
def test_a_ledger_is_called_corrupt_only_when_the_integrity_check_says_so_and_the_fix_is_repair_ledger(tmp_path):
    state = tmp_path / "state"
    env = {"REELCREW_STATE_DIR": str(state)}
    assert cli("--mock", "--topic", "tea", "--scenes", "1", "--until", "prompts", "-o", str(tmp_path / "o"),
               env=env).returncode == 0
    db = state / "reelcrew.db"
    db.write_bytes(b"this is not sqlite" * 100)
    result = cli("status", "--json", env=env)
    error = error_json(result)
    assert result.returncode == 2 and "corrupt" in error["error"] and "integrity check" in error["error"]
    assert "reelcrew repair --ledger" in error["fix"] and "aside" not in error["fix"]


@pytest.mark.slow
def test_json_errors_from_every_command(tmp_path):
    (tmp_path / "exists.env").write_text("")
    failing = {
        "run": ["run", "--mock", "--json"],  # no topic
        "resume": ["resume", "-o", str(tmp_path / "typo"), "--json"],
        "retry": ["retry", "no-such-production", "--json", "-o", str(tmp_path / "o")],
        "status": ["status", "no-such-production", "--json", "-o", str(tmp_path / "o")],
        "cost": ["cost", "--config", str(tmp_path / "missing.yaml"), "--json"],
        "repair": ["repair", "--config", str(tmp_path / "missing.yaml"), "--json"],
        "doctor": ["doctor", "--config", str(tmp_path / "missing.yaml"), "--json"],
        "assemble": ["assemble", "--json", "-o", str(tmp_path / "o")],  # nothing to assemble
        "config show": ["config", "show", "--config", str(tmp_path / "missing.yaml"), "--json"],
        "config init": ["config", "init", "--path", str(tmp_path / "exists.env"), "--json"],
        "ledger import": ["ledger", "import", str(tmp_path / "none.db"), "--json", "-o", str(tmp_path / "o")],
        "a bad option": ["status", "--no-such-flag", "--json"],
    }
    for name, args in failing.items():
        result = cli(*args)
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        error = error_json(result)
        assert error["error"] and error["fix"], name


@pytest.mark.slow
def test_a_run_that_exits_1_puts_the_error_object_beside_its_productions(real_env, fake):
    result = cli("--topic", "tea", "--scenes", "1", "--yes", "--json", env={"REELCREW_DAILY_BUDGET_USD": "0.01"})
    assert result.returncode == 1, result.stderr
    answer = json.loads(result.stdout)
    assert answer["exit_code"] == 1 and "paused" in answer["error"] and "resume" in answer["fix"]
    assert [p["status"] for p in answer["productions"]] == ["paused"] and fake.accepted == 0


@pytest.mark.slow
def test_resume_with_a_mistyped_output_folder_says_nothing_is_there_and_creates_nothing(tmp_path):
    typo = tmp_path / "ouptut"
    result = cli("resume", "-o", str(typo))
    assert result.returncode == 2
    assert f"nothing to resume in {typo}" in result.stderr and "ledger" in result.stderr and not typo.exists()
    typo.mkdir()  # an existing folder with no production in it says so too
    again = cli("resume", "-o", str(typo), "--json")
    assert again.returncode == 2 and "has no production there" in error_json(again)["error"]


FAKE_FFMPEG = """#!/bin/sh
# the real ffmpeg, except the final's encoder (its output is a .part name): it writes a little and hangs
for last; do :; done
case "$last" in
  *.part.mp4) echo partial > "$last"; exec sleep 600 ;;
esac
exec {real} "$@"
"""


def marked(mark: str) -> list[int]:
    """Processes (of any name) whose environment carries `mark`: the CLI and every child it started."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if mark.encode() in (proc / "environ").read_bytes():
                state = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("State"))
                if "zombie" not in state:
                    pids.append(int(proc.name))
        except (OSError, StopIteration):
            continue
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the children through /proc (Linux)")
def test_kill_nine_mid_render_leaves_no_ffmpeg_and_the_next_start_sweeps_its_temp_files(tmp_path):
    from reelcrew.media import ffmpeg_exe

    out, temp = tmp_path / "o", tmp_path / "tmp"
    temp.mkdir()
    fake = tmp_path / "ffmpeg"
    fake.write_text(FAKE_FFMPEG.format(real=ffmpeg_exe()))
    fake.chmod(0o755)
    args = ["--mock", "--topic", "tea", "--scenes", "2", "-o", str(out)]
    assert cli(*args, "--until", "clips", env={"TMPDIR": str(temp)}).returncode == 0

    mark = f"REELCREW_TEST_MARK={uuid.uuid4().hex}"
    env = {**os.environ, "TMPDIR": str(temp), "IMAGEIO_FFMPEG_EXE": str(fake), mark.split("=")[0]: mark.split("=")[1]}
    proc = subprocess.Popen([*RUN, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: list(out.glob("*/.final.mp4.*.part.mp4")), "the encoder to start the final", proc=proc)
        children = [pid for pid in marked(mark) if pid != proc.pid]
        assert children, "the render's ffmpeg processes"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_until(lambda: not marked(mark), "every ffmpeg of the killed run to die with it", timeout=60)
    finally:
        for pid in marked(mark):
            os.kill(pid, signal.SIGKILL)
    leftovers = list(temp.glob("reelcrew-cut.*")) + list(out.glob("*/.final.mp4.*.part.mp4"))
    assert len(leftovers) == 2, leftovers

    resumed = cli("resume", "-o", str(out), "--mock", "--json", env={"TMPDIR": str(temp)})
    assert resumed.returncode == 0, resumed.stderr
    assert not any(path.exists() for path in leftovers)
    assert summary(resumed)[0]["status"] == "done" and list(out.glob("*/final.mp4"))


@pytest.mark.slow
def test_assemble_to_a_bare_file_name_in_the_current_folder_renders(tmp_path):
    """Temp names carry their owner without a colon: ffmpeg reads `a:b` in a bare file name as a protocol."""
    from tests.test_assembly import clip

    clips = [clip(tmp_path, i).name for i in range(2)]  # the conftest runs each test in tmp_path
    result = cli("assemble", "--clips", *clips, "--output", "cut.mp4", "--json")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cut.mp4").exists() and not list(tmp_path.glob(".*.part*"))
