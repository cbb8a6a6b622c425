"""The quota-aware Veo tool, through the real google-genai SDK against the fake Google server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections import deque

import pytest

from reelcrew.media import probe
from reelcrew.models import ClipStatus
from tests.video_helpers import jobs, ledger, prompts, stack


pytestmark = pytest.mark.usefixtures("ledger_db")  # every test here, on SQLite and on PostgreSQL


def statuses(clips):
    return [c.status for c in clips]


def test_seed_disaster_twelve_clips_all_done_with_exactly_twelve_paid_submits(real_env, fake, tmp_path):
    fake.script.quota_limit, fake.script.quota_window, fake.script.retry_delay = 2, 0.4, "0.1s"
    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_max_concurrent=4)
    clips = gen.run(jobs(store, settings, prompts(12), out))
    assert statuses(clips) == [ClipStatus.done] * 12
    assert fake.accepted == 12
    assert max(fake.accepted_by_prompt.values()) == 1
    assert fake.submit_attempts > 12  # the quota really did reject submits
    assert all(probe(c.path).duration == 8.0 for c in clips)


def test_rerun_reuses_done_clips_without_paying(real_env, fake, tmp_path):
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    gen.run(jobs(store, settings, prompts(3), out))
    settings, store, gen = stack(out)
    again = gen.run(jobs(store, settings, prompts(3), out, pid="p2"))
    assert statuses(again) == [ClipStatus.done] * 3
    assert fake.accepted == 3
    assert (out / "p2" / "clips" / "clip-01.mp4").exists()
    assert sum(1 for r in store.cost_rows()) == 3  # charged once per clip


def test_per_day_quota_pauses_clips_and_says_until_when(real_env, fake, tmp_path):
    fake.script.submit_faults = deque(["429-day"] * 10)
    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_max_concurrent=1)
    clips = gen.run(jobs(store, settings, prompts(3), out))
    assert statuses(clips) == [ClipStatus.paused] * 3
    assert fake.submit_attempts == 1  # it stopped submitting after the first per-day 429
    assert all("paused until" in c.error and "daily quota" in c.error for c in clips)


def test_poll_503_is_retried_and_clip_finishes(real_env, fake, tmp_path):
    fake.script.poll_faults = deque(["503", "503", "429"])
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    clips = gen.run(jobs(store, settings, prompts(1), out))
    assert statuses(clips) == [ClipStatus.done]
    assert fake.accepted == 1


def test_submit_503_is_retried_but_ambiguous_submit_is_recorded_not_resent(real_env, fake, tmp_path):
    fake.script.submit_faults = deque(["503", "late"])
    fake.script.late_seconds = 3.0  # longer than SUBMIT_TIMEOUT=2: accepted, but the client never hears
    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_max_concurrent=1)
    clips = gen.run(jobs(store, settings, prompts(1), out))
    assert statuses(clips) == [ClipStatus.ambiguous]
    assert "not resubmitted" in clips[0].error and "reelcrew retry" in clips[0].error
    assert fake.accepted == 1  # the late one was accepted; we did not send another
    assert [r["outcome"] for r in store.receipts()] == ["ambiguous"]


def test_safety_filtered_clip_is_filtered_with_reason_and_siblings_finish(real_env, fake, tmp_path):
    items = prompts(3)
    items[1].prompt = "UNSAFE scene"
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    clips = gen.run(jobs(store, settings, items, out))
    assert statuses(clips) == [ClipStatus.done, ClipStatus.filtered, ClipStatus.done]
    assert "not be charged" in clips[1].error
    assert {r["clip_key"] for r in store.cost_rows()} == {clips[0].key, clips[2].key}


def test_never_finishing_operation_fails_after_timeout_without_resubmit(real_env, fake, tmp_path):
    items = prompts(1, prefix="NEVERDONE")
    out = tmp_path / "out"
    settings, store, gen = stack(out, operation_timeout=0.6)
    clips = gen.run(jobs(store, settings, items, out))
    assert statuses(clips) == [ClipStatus.failed]
    assert "OPERATION_TIMEOUT" in clips[0].error
    assert fake.accepted == 1


def test_operation_error_is_retried_up_to_max_then_failed(real_env, fake, tmp_path):
    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_max_retries=1)
    clips = gen.run(jobs(store, settings, prompts(1, prefix="FAILOP"), out))
    assert statuses(clips) == [ClipStatus.failed]
    assert "internal" in clips[0].error
    assert fake.accepted == 2  # failed generations are free: one retry allowed
    assert store.cost_rows() == []


def test_truncated_and_redirected_downloads_are_fetched_again_not_resubmitted(real_env, fake, tmp_path):
    fake.script.download_faults = deque(["truncate", "redirect"])
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    clips = gen.run(jobs(store, settings, prompts(1), out))
    assert statuses(clips) == [ClipStatus.done]
    assert fake.accepted == 1
    assert fake.downloads >= 3
    assert probe(clips[0].path).has_audio


def test_unknown_model_fails_with_a_message_naming_the_fix(real_env, fake, tmp_path, monkeypatch):
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    monkeypatch.setattr("tests.fakes.google_server.MODELS", set())
    clips = gen.run(jobs(store, settings, prompts(1), out))
    assert statuses(clips) == [ClipStatus.failed]
    assert "VEO3_MODEL" in clips[0].error


def test_concurrency_never_exceeds_the_limit_as_seen_by_the_server(real_env, fake, tmp_path):
    fake.script.latency = 0.3
    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_max_concurrent=2)
    clips = gen.run(jobs(store, settings, prompts(6), out))
    assert statuses(clips) == [ClipStatus.done] * 6
    assert fake.max_in_flight == 2


WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from tests.video_helpers import jobs, ledger, prompts, stack
    out = Path({out!r})
    settings, store, gen = stack(out, veo3_max_concurrent=2)
    clips = gen.run(jobs(store, settings, prompts(6), out))
    print(",".join(c.status.value for c in clips))
""")


def test_two_processes_sharing_one_ledger_respect_one_limit_and_never_double_submit(real_env, fake, tmp_path):
    fake.script.latency = 0.3
    out = tmp_path / "out"
    from tests.conftest import ROOT

    code = WORKER.format(root=str(ROOT), out=str(out))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    for stdout, stderr in results:
        assert stdout.strip() == ",".join(["done"] * 6), stderr[-2000:]
    assert fake.accepted == 6
    assert fake.max_in_flight <= 2


def test_restart_reattaches_in_flight_operations_instead_of_resubmitting(real_env, fake, tmp_path):
    fake.script.latency = 60  # still running when the first process dies
    out = tmp_path / "out"
    from tests.conftest import ROOT

    code = WORKER.format(root=str(ROOT), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = ledger()
    deadline = time.time() + 60
    while time.time() < deadline:  # kill once both receipts are committed (outside the submit window)
        if len(store.receipts()) >= 2:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert fake.accepted == 2
    for op in fake.ops.values():
        op["done_at"] = time.time()  # Veo finishes them while we are down
    fake.script.latency = 0.0
    settings, store, gen = stack(out, veo3_max_concurrent=2)
    clips = gen.run(jobs(store, settings, prompts(6), out))
    assert statuses(clips) == [ClipStatus.done] * 6
    assert fake.accepted == 6  # the two in flight were re-attached, not paid again


def test_mock_backend_makes_valid_clips_of_the_requested_shape(tmp_path):
    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_mock_mode=True, polling_interval=0.01)
    items = prompts(2, duration=6, aspect="9:16")
    clips = gen.run(jobs(store, settings, items, out))
    assert statuses(clips) == [ClipStatus.done] * 2
    info = probe(clips[0].path)
    assert (info.width, info.height, info.duration, info.has_audio) == (720, 1280, 6.0, True)
    assert clips[0].sha256 != clips[1].sha256  # visibly different per prompt


def test_mock_quota_rehearsal_still_finishes_every_clip(tmp_path):
    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_mock_mode=True, polling_interval=0.01, veo3_mock_quota_rate=0.5,
                                 veo3_mock_seed=7)
    clips = gen.run(jobs(store, settings, prompts(4), out))
    assert statuses(clips) == [ClipStatus.done] * 4


def test_crewai_tool_returns_failures_instead_of_raising_and_never_pays_twice(real_env, fake, tmp_path):
    from crewai.tools import ToolFailure

    from reelcrew.video.tool import VideoGenerationTool

    out = tmp_path / "out"
    settings, store, gen = stack(out)
    tool = VideoGenerationTool(settings, store, gen, production_id="agent")
    first = json.loads(tool.run(prompt="a lighthouse at dusk", index=1))
    again = json.loads(tool.run(prompt="a lighthouse at dusk", index=1))
    assert first["status"] == again["status"] == "done" and fake.accepted == 1
    filtered = tool.run(prompt="UNSAFE content", index=2)
    assert isinstance(filtered, ToolFailure) and "filtered" in filtered.message
    bad = tool.run(prompt="x", index=3, resolution="1080p", duration=4)
    assert isinstance(bad, ToolFailure) and "1080p" in bad.message


def test_vertex_backend_speaks_its_wire_format_to_the_fake(real_env, fake, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", fake.url)
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    items = prompts(2)
    items[1].prompt = "UNSAFE on vertex"
    clips = gen.run(jobs(store, settings, items, out))
    assert statuses(clips) == [ClipStatus.done, ClipStatus.filtered]
    assert all(op["vertex"] for op in fake.ops.values())
    assert probe(clips[0].path).duration == 8.0


def test_expired_download_fails_clearly_without_paying_again(real_env, fake, tmp_path):
    fake.script.download_faults = deque(["expired"] * 4)
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    clips = gen.run(jobs(store, settings, prompts(1), out))
    assert statuses(clips) == [ClipStatus.failed]
    assert "download kept failing" in clips[0].error and "repair" in clips[0].error
    assert clips[0].operation_name and fake.accepted == 1


def test_breaker_opens_after_consecutive_failures_waits_then_probes_and_survives_restart(real_env, fake, tmp_path):
    from reelcrew.video.quota import Breaker

    fake.script.submit_faults = deque(["503"] * 3)
    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_consecutive_failure_threshold=3, veo3_quota_wait_time=1.0,
                                 veo3_max_retries=5, veo3_max_concurrent=1)
    clips = gen.run(jobs(store, settings, prompts(2), out))
    assert statuses(clips) == [ClipStatus.done] * 2
    t = fake.attempt_times
    assert len(t) == 5 and t[3] - t[2] >= 1.0  # nothing was sent while the breaker was open; then one probe
    assert fake.accepted == 2

    fake.script.submit_faults = deque(["503"] * 3)
    settings, store, gen = stack(out, veo3_consecutive_failure_threshold=3, veo3_quota_wait_time=30,
                                 veo3_max_retries=2, veo3_max_concurrent=1)
    gen.run(jobs(store, settings, prompts(1, prefix="another"), out))  # fails 3 times: breaker opens for 30 s
    _, restarted, _ = stack(out, veo3_consecutive_failure_threshold=3, veo3_quota_wait_time=30)
    assert Breaker(restarted, settings).before_submit() > 20  # a new process respects the open breaker


def test_mock_failure_rehearsal_retries_failed_operations_deterministically(tmp_path):
    def rehearse(out):
        settings, store, gen = stack(out, veo3_mock_mode=True, polling_interval=0.01, veo3_mock_failure_rate=0.5,
                                     veo3_mock_seed=3, veo3_max_retries=1, veo3_retry_wait_base=0.01)
        return [(c.status, c.retries) for c in gen.run(jobs(store, settings, prompts(4), out))]

    first, second = rehearse(tmp_path / "a"), rehearse(tmp_path / "b")
    assert first == second  # same seed, same rehearsal
    assert any(retries for _, retries in first)  # some operations failed and were tried again
