"""What a production is (issue 10), through the CLI: the settings that change the clips make a new production,
the mode it was made in is kept and used by resume, retry and assemble, an operation Veo does not know fails its
clip at once, and two identical runs at once run the writers once.

Real mode is the real google-genai SDK against the fake Google server (tests/fakes/google_server.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import pytest

from reelcrew.media import probe
from tests.conftest import ROOT

RUN = [sys.executable, str(ROOT / "run_integrated_pipeline.py")]


def cli(*args, env=None, timeout=240):
    return subprocess.run([*RUN, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def start(*args, env=None):
    return subprocess.Popen([*RUN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def productions(result) -> list[dict]:
    return json.loads(result.stdout)["productions"]


def test_an_operation_veo_does_not_know_fails_its_clip_at_once_without_resubmitting(real_env, fake):
    fake.script.poll_faults = deque(["404"])
    started = time.monotonic()
    result = cli("--topic", "tea", "--scenes", "1", "--yes", "--json", env={"OPERATION_TIMEOUT": "600"})
    assert result.returncode == 1, result.stderr
    prod = productions(result)[0]
    assert prod["status"] == "failed" and prod["clips_failed"] == 1
    clip = json.loads(cli("status", prod["id"], "--json").stdout)["productions"][0]["clips"][0]
    assert "does not know operation" in clip["error"] and "404" in clip["error"]
    assert f"reelcrew retry {prod['id']} --clip 1" in clip["error"]
    assert fake.polls == 1 and fake.accepted == 1  # the 404 was not polled again, nor the clip resubmitted
    assert time.monotonic() - started < 120  # nowhere near OPERATION_TIMEOUT


@pytest.mark.usefixtures("ledger_db")
def test_two_identical_runs_at_once_run_the_writers_once(tmp_path):
    from tests.video_helpers import ledger

    out = tmp_path / "out"
    args = ("--mock", "--topic", "how tea is made", "--scenes", "2", "--json", "-o", str(out))
    slow = {"REELCREW_MOCK_WRITER_LATENCY": "1.5"}
    procs = [start(*args, env=slow) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    store = ledger()
    [prod] = store.all_productions()
    written = [e for e in store.recent_events(prod.id, 500) if e["kind"] == "stage" and "written" in e["message"]]
    assert sorted(e["stage"] for e in written) == ["prompts", "script", "seo"]  # each stage written once
    assert store.llm_answers(prod.id) == 3
    notes = " ".join(o[1] for o in outs)
    assert "being rendered by another process" in notes  # the second said so and left the production alone
    assert len(list(out.glob("*/final.mp4"))) == 1
