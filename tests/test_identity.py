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
