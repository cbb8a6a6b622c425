"""What a production is (issue 10), through the CLI: the settings that change the clips make a new production,
the mode it was made in is kept and used by resume, retry and assemble, an operation Veo does not know fails its
clip at once, and two identical runs at once run the writers once.

Real mode is the real google-genai SDK against the fake Google server (tests/fakes/google_server.py)."""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from pathlib import Path

import pytest

from reelcrew.identity import production_id
from reelcrew.media import probe
from reelcrew.models import ClipStatus
from tests.cli_helpers import cli_in_process as cli  # processes of their own (`start`) where they run at once
from tests.cli_helpers import start
from tests.video_helpers import ledger
from tests.waiting import wait_until

NO_KEYS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


def productions(result) -> list[dict]:
    return json.loads(result.stdout)["productions"]


def status_of(pid: str) -> dict:
    return json.loads(cli("status", pid, "--json").stdout)["productions"][0]


def test_default_settings_keep_the_ids_older_ledgers_hold_and_each_clip_setting_makes_another():
    legacy = hashlib.sha256(b"tea\x1fen\x1f6\x1f16:9\x1fcinematic").hexdigest()[:8]  # the old formula
    asked = ("tea", "en", 6, "16:9", "cinematic")
    default = production_id(*asked, resolution="720p", clip_seconds=8, model="veo-3.1-fast-generate-001",
                            rehearsal=None, continuity=None)
    assert default == production_id(*asked) == f"tea-{legacy}"
    changed = [production_id(*asked, resolution="1080p"), production_id(*asked, clip_seconds=6),
               production_id(*asked, model="veo-3.1-generate-001"), production_id(*asked, rehearsal="writers+veo"),
               production_id(*asked, continuity="first-frame"), production_id("tea", "zh", 6, "16:9", "cinematic"),
               production_id("tea", "en", 6, "9:16", "cinematic"), production_id("tea", "en", 6, "16:9", "anime")]
    assert len({default, *changed}) == 1 + len(changed)


@pytest.mark.slow
def test_a_new_resolution_is_a_new_production_of_new_full_hd_clips_and_the_same_run_again_pays_nothing(
        real_env, fake):
    first = cli("--topic", "tea", "--scenes", "1", "--yes", "--json")
    assert first.returncode == 0, first.stderr
    hd = cli("--topic", "tea", "--scenes", "1", "--yes", "--json", env={"RESOLUTION": "1080p"})
    assert hd.returncode == 0, hd.stderr
    sd_prod, hd_prod = productions(first)[0], productions(hd)[0]
    assert sd_prod["id"] != hd_prod["id"] and hd_prod["status"] == "done"
    assert fake.accepted == 2  # the 1080p clip is a new request, not the 720p one upscaled
    assert sorted(op["params"]["resolution"] for op in fake.ops.values()) == ["1080p", "720p"]
    for path in (Path(hd_prod["final"]), Path(hd_prod["folder"]) / "clips" / "clip-01.mp4"):
        info = probe(path)
        assert (info.width, info.height) == (1920, 1080), path
    again = cli("--topic", "tea", "--scenes", "1", "--yes", "--json", env={"RESOLUTION": "1080p"})
    assert again.returncode == 0, again.stderr
    assert productions(again)[0]["id"] == hd_prod["id"] and "already rendered" in again.stderr
    assert fake.accepted == 2 and fake.submit_attempts == 2  # reused: nothing new sent, nothing new paid
    assert status_of(sd_prod["id"])["final"] == sd_prod["final"]  # the 720p production is still there


@pytest.mark.slow
def test_a_mock_production_is_resumed_in_mock_mode_and_recut_without_keys(real_env, fake):
    proc = start("--mock", "--topic", "tea", "--scenes", "2", "--json", env={"VEO3_MOCK_LATENCY": "600"})
    store = ledger()
    wait_until(lambda: len(store.receipts()) >= 2, "the mock operations' receipts", proc=proc)
    proc.kill()
    proc.wait()
    assert all(r["operation_name"].startswith("mock/operations/") for r in store.receipts())
    # real mode in the environment (an API key, VEO3_MOCK_MODE=false), no --mock: the production stays mock
    resumed = cli("resume", "--json", env={"VEO3_MOCK_LATENCY": "0"})
    assert resumed.returncode == 0, resumed.stderr
    prod = productions(resumed)[0]
    assert prod["status"] == "done" and prod["clips_done"] == 2 and prod["final"]
    assert fake.submit_attempts == 0 and fake.polls == 0  # nothing went to Google
    first_cut = Path(prod["final"]).stat().st_mtime_ns
    recut = cli("assemble", prod["id"], drop=NO_KEYS)
    assert recut.returncode == 0, recut.stderr
    after = status_of(prod["id"])
    assert after["status"] == "done" and after["final"] == prod["final"]
    assert Path(prod["final"]).stat().st_mtime_ns > first_cut  # really cut again
    assert fake.submit_attempts == 0 and fake.polls == 0


@pytest.mark.slow
def test_mock_mode_on_a_real_production_is_refused_and_changes_nothing(real_env, fake):
    first = cli("--topic", "tea", "--scenes", "1", "--yes", "--json")
    assert first.returncode == 0, first.stderr
    prod = productions(first)[0]
    for args, env in ((("retry", prod["id"], "--clip", "1", "--mock"), {}),
                      (("assemble", prod["id"]), {"VEO3_MOCK_MODE": "true"})):
        refused = cli(*args, env=env)
        assert refused.returncode == 2, refused.stderr
        assert "was made in real mode (Veo on the Gemini API" in refused.stderr and "without --mock" in refused.stderr
        after = status_of(prod["id"])
        assert after["status"] == "done" and after["final"] == prod["final"]
    assert fake.accepted == 1


def test_resume_in_mock_mode_leaves_a_real_production_alone_and_says_how_to_finish_it(real_env, fake):
    fake.script.submit_faults = deque(["429-day"])
    paused = cli("--topic", "tea", "--scenes", "1", "--yes", "--json")
    assert paused.returncode == 1 and productions(paused)[0]["status"] == "paused", paused.stderr
    resumed = cli("resume", "--mock", "--json")
    assert resumed.returncode == 1, resumed.stderr
    assert productions(resumed)[0]["status"] == "paused"
    assert "left alone" in resumed.stderr and "without --mock" in resumed.stderr
    assert fake.submit_attempts == 1  # nothing more was sent, by the mock or anyone


@pytest.mark.slow
def test_a_recut_that_cannot_start_leaves_a_done_production_done_with_its_final(real_env, fake):
    first = cli("--topic", "tea", "--scenes", "2", "--yes", "--json")
    assert first.returncode == 0, first.stderr
    prod = productions(first)[0]
    store = ledger()
    second = store.production_clips(prod["id"])[1]
    store.update_clip(second.key, status=ClipStatus.pending)  # a clip that needs Veo again (as repair may leave it)
    recut = cli("assemble", prod["id"], drop=NO_KEYS)
    assert recut.returncode == 2 and "no API key" in recut.stderr
    after = status_of(prod["id"])
    assert after["status"] == "done" and after["final"] == prod["final"]  # not interrupted, final not dropped
    assert store.stage(prod["id"], "final") is not None and fake.accepted == 2


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


@pytest.mark.slow
@pytest.mark.usefixtures("ledger_db")
def test_an_older_ledgers_mock_production_is_found_as_mock_after_the_upgrade(real_env, fake):
    from sqlalchemy import text

    proc = start("--mock", "--topic", "tea", "--scenes", "2", "--json", env={"VEO3_MOCK_LATENCY": "600"})
    store = ledger()
    wait_until(lambda: len(store.receipts()) >= 2, "the mock operations' receipts", proc=proc)
    proc.kill()
    proc.wait()
    [prod] = store.all_productions()
    legacy = production_id(prod.topic, prod.language, prod.scenes, prod.aspect_ratio, prod.style)
    with store.engine.begin() as con:  # what a version 6 ledger held: the old id, no identity or mode
        for table in ("stage_outputs", "clips", "production_clips", "costs", "events"):
            con.execute(text(f"UPDATE {table} SET production_id=:new WHERE production_id=:old"),
                        {"new": legacy, "old": prod.id})
        con.execute(text("UPDATE productions SET id=:new, resolution=NULL, clip_seconds=NULL, model=NULL, "
                         "writers=NULL, backend=NULL WHERE id=:old"), {"new": legacy, "old": prod.id})
        con.execute(text("UPDATE schema_info SET value='6' WHERE key='version'"))
    store.close()
    listed = json.loads(cli("status", "--json").stdout)["productions"]
    assert [p["id"] for p in listed] == [prod.id]  # moved back to the id a mock rehearsal has now
    resumed = cli("resume", "--json", env={"VEO3_MOCK_LATENCY": "0"})  # real mode in the environment
    assert resumed.returncode == 0, resumed.stderr
    assert productions(resumed)[0]["status"] == "done"
    assert fake.submit_attempts == 0 and fake.polls == 0
    upgraded = ledger().production(prod.id)
    assert (upgraded.writers, upgraded.backend, upgraded.resolution, upgraded.clip_seconds) == ("mock", "mock",
                                                                                                "720p", 8)
