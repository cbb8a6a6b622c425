"""The quota-aware Veo tool, through the real google-genai SDK against the fake Google server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections import deque
from pathlib import Path

import pytest

from reelcrew.media import probe
from reelcrew.models import ClipStatus
from tests.video_helpers import jobs, ledger, prompts, stack
from tests.waiting import DEADLINE, wait_until

pytestmark = pytest.mark.usefixtures("ledger_db")  # every test here, on SQLite and on PostgreSQL


def statuses(clips):
    return [c.status for c in clips]


@pytest.mark.slow
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
    fake.script.late_seconds = 600  # accepted, but answered only when the fake stops: the client never hears
    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_max_concurrent=1, submit_timeout=5)
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


def test_rate_gate_spaces_submits_by_its_window_as_the_server_sees_them(real_env, fake, tmp_path):
    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_rpm=2, veo3_rate_window_seconds=3, veo3_max_concurrent=4)
    clips = gen.run(jobs(store, settings, prompts(4), out))
    assert statuses(clips) == [ClipStatus.done] * 4
    t = sorted(fake.attempt_times)
    assert len(t) == 4  # the gate held them back: no 429 was needed
    # two per 3 s window; the slack is for the moments between leaving the gate and reaching the server
    assert t[2] - t[0] >= 2.0 and t[3] - t[1] >= 2.0
    assert t[3] - t[0] < 30  # and the window was the 3 s asked for, not Veo's minute

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_restart_reattaches_in_flight_operations_instead_of_resubmitting(real_env, fake, tmp_path):
    fake.script.latency = 60  # still running when the first process dies
    out = tmp_path / "out"
    from tests.conftest import ROOT

    code = WORKER.format(root=str(ROOT), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = ledger()
    # kill once both receipts are committed (outside the submit window)
    wait_until(lambda: len(store.receipts()) >= 2, "two receipts in the ledger", proc=proc)
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


PROJECT_PATH = "/v1beta1/projects/test-project/locations/us-central1/publishers/google/models/"


def test_vertex_project_wins_over_a_stray_api_key_veo_goes_to_the_project_path_with_a_bearer_token(
        real_env, vertex_project, fake, tmp_path):
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    items = prompts(2)
    items[1].prompt = "UNSAFE on vertex"
    clips = gen.run(jobs(store, settings, items, out))
    assert statuses(clips) == [ClipStatus.done, ClipStatus.filtered]
    assert probe(clips[0].path).duration == 8.0
    veo = [r for r in fake.requests if r["path"] != "/token"]
    verbs = {r["path"].rpartition(":")[2] for r in veo}
    assert verbs == {"predictLongRunning", "fetchPredictOperation"}
    assert all(r["path"].startswith(PROJECT_PATH) for r in veo)
    assert fake.tokens_issued and all(r["token"] in fake.tokens_issued and not r["api_key"] for r in veo)
    assert all(name.startswith("projects/test-project/locations/us-central1/publishers/google/models/")
               for name in fake.ops)
    assert clips[0].operation_name in fake.ops


def test_vertex_credentials_the_token_endpoint_refuses_fail_the_clip_with_the_fix_and_send_nothing(
        real_env, vertex_project, fake, tmp_path, monkeypatch):
    from tests.fakes.google_server import FakeGoogle

    with FakeGoogle() as stranger:  # its service account is unknown to `fake`, whose /token refuses the assertion
        stranger.url = fake.url
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(stranger.service_account(tmp_path / "other.json")))
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    clips = gen.run(jobs(store, settings, prompts(1), out))
    assert statuses(clips) == [ClipStatus.failed]
    assert "credentials" in clips[0].error and "gcloud auth application-default login" in clips[0].error
    assert fake.submit_attempts == 0 and not fake.tokens_issued and store.receipts() == []


def test_vertex_express_mode_only_when_the_setting_asks_for_it(real_env, fake, tmp_path, monkeypatch):
    from reelcrew.errors import ConfigError
    from reelcrew.settings import load_settings
    from reelcrew.video.backends import make_backend

    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", fake.url)
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT") as info:  # a key alone is not a project
        make_backend(load_settings())
    assert "GOOGLE_VERTEX_EXPRESS=true" in info.value.fix
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    monkeypatch.setenv("GOOGLE_VERTEX_EXPRESS", "true")
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    clips = gen.run(jobs(store, settings, prompts(1), out))
    assert statuses(clips) == [ClipStatus.done]
    assert fake.requests and all(r["path"].startswith("/v1beta1/publishers/google/models/") and r["api_key"]
                                 and not r["token"] for r in fake.requests)


def test_a_download_slower_than_the_submit_timeout_gets_download_timeout(real_env, fake, tmp_path):
    fake.script.download_faults = deque(["slow"])
    fake.script.late_seconds = 3.0  # longer than SUBMIT_TIMEOUT=2, well within DOWNLOAD_TIMEOUT=10
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    clips = gen.run(jobs(store, settings, prompts(1), out))
    assert statuses(clips) == [ClipStatus.done]
    assert fake.downloads == 1  # the first attempt was allowed to finish


def test_a_download_failing_for_several_attempts_is_fetched_later_without_paying_again(real_env, fake, tmp_path):
    fake.script.download_faults = deque(["500"] * 6)
    out = tmp_path / "out"
    settings, store, gen = stack(out, download_retry_window=120)
    clips = gen.run(jobs(store, settings, prompts(1), out))
    assert statuses(clips) == [ClipStatus.done]
    assert fake.downloads == 7 and fake.accepted == 1
    assert probe(clips[0].path).duration == 8.0


def test_a_download_failing_past_the_retry_window_keeps_the_operation_for_repair(real_env, fake, tmp_path):
    fake.script.download_faults = deque(["500"] * 1000)
    out = tmp_path / "out"
    settings, store, gen = stack(out, download_retry_window=0.5)
    clips = gen.run(jobs(store, settings, prompts(1), out))
    assert statuses(clips) == [ClipStatus.failed]
    assert "DOWNLOAD_RETRY_WINDOW" in clips[0].error and "reelcrew repair" in clips[0].error
    assert clips[0].operation_name and fake.accepted == 1  # kept for `repair`, not paid again


def test_expired_download_fails_at_once_saying_the_gemini_api_kept_it_2_days(real_env, fake, tmp_path):
    fake.script.download_faults = deque(["expired"])
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    clips = gen.run(jobs(store, settings, prompts(1), out))
    assert statuses(clips) == [ClipStatus.failed]
    assert "keeps generated videos 2 days" in clips[0].error and "cannot fetch it" in clips[0].error
    assert "reelcrew retry p1 --clip 1" in clips[0].error
    assert fake.downloads == 1 and fake.accepted == 1  # no pointless retries, nothing paid again


def test_a_gemini_api_clip_older_than_2_days_is_not_downloaded_but_explained(real_env, fake, tmp_path):
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    clips = gen.run(jobs(store, settings, prompts(1), out))
    Path(clips[0].path).unlink()
    store.update_clip(clips[0].key, submitted_at=time.time() - 3 * 24 * 3600)
    downloads = fake.downloads
    settings, store, gen = stack(out)
    again = gen.run(jobs(store, settings, prompts(1), out))
    assert statuses(again) == [ClipStatus.failed]
    assert "keeps generated videos 2 days" in again[0].error and "reelcrew retry p1 --clip 1" in again[0].error
    assert fake.downloads == downloads and fake.accepted == 1


def test_connection_refused_on_submit_is_retried_and_the_clip_paid_once(real_env, fake, tmp_path, monkeypatch):
    from tests.fakes.refusing_gate import RefusingGate

    with RefusingGate(int(fake.url.rpartition(":")[2])) as gate:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gate.url)  # refused until the gate opens
        out = tmp_path / "out"
        settings, store, gen = stack(out, veo3_max_retries=50, veo3_max_concurrent=1)
        job_list = jobs(store, settings, prompts(1), out)
        refusals: list[str] = []

        def open_after_a_refusal():
            watcher = ledger()
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                error = watcher.clip(job_list[0].key).error or ""
                if "connection refused" in error:
                    refusals.append(error)
                    break
                time.sleep(0.01)
            gate.open()

        opener = threading.Thread(target=open_after_a_refusal)
        opener.start()
        clips = gen.run(job_list)
        opener.join()
    assert refusals and "nothing was sent" in refusals[0]
    assert statuses(clips) == [ClipStatus.done]
    assert fake.submit_attempts == 1 and fake.accepted == 1  # the refused attempts never reached the server
    assert [r["outcome"] for r in store.receipts()] == ["accepted"]
    assert clips[0].retries >= 1


def test_a_connection_reset_after_the_submit_was_sent_stays_ambiguous(real_env, fake, tmp_path):
    fake.script.submit_faults = deque(["reset"])  # the server took the request, then the connection dropped
    out = tmp_path / "out"
    settings, store, gen = stack(out)
    clips = gen.run(jobs(store, settings, prompts(1), out))
    assert statuses(clips) == [ClipStatus.ambiguous]
    assert fake.submit_attempts == 1 and fake.accepted == 1
    assert [r["outcome"] for r in store.receipts()] == ["ambiguous"]


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
