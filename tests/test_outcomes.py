"""Honest outcomes through the CLI: `incomplete` for a missing scene, chapters and subtitles from the actual cut,
`failed` with the stage and the cause instead of `interrupted`, where a `--until` run stopped, no stale final."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import srt

from reelcrew.media import probe
from reelcrew.models import Chapter, Scene, Script
from tests.test_pipeline_cli import RUN, cli, summary
from tests.video_helpers import ledger
from tests.waiting import wait_until

REWORD = '--prompt "<reworded prompt>"'


def one_status(pid: str) -> dict:
    result = cli("status", pid, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["productions"][0]


def chapter_seconds(chapter: dict) -> int:
    minutes, secs = chapter["start"].split(":")
    return int(minutes) * 60 + int(secs)


def check_cut(folder: Path, scenes_in_cut: list[int]) -> None:
    """final.mp4, metadata.json and final.srt agree with each other and with the scenes actually cut."""
    duration = probe(folder / "final.mp4").duration  # ffmpeg's own reading of the container
    assert duration == pytest.approx(8 * len(scenes_in_cut), abs=0.1)
    planned = json.loads((folder / "seo.json").read_text())["chapters"]
    script = json.loads((folder / "script.json").read_text())["scenes"]
    meta = json.loads((folder / "metadata.json").read_text())
    chapters = meta["seo"]["chapters"]
    assert [c["title"] for c in chapters] == [planned[s - 1]["title"] for s in scenes_in_cut]
    assert [chapter_seconds(c) for c in chapters] == [8 * n for n in range(len(scenes_in_cut))]
    assert all(chapter_seconds(c) < duration for c in chapters)
    assert [s["scene"] for s in meta["video"]["scenes"]] == scenes_in_cut
    assert meta["video"]["duration"] == pytest.approx(duration, abs=0.1)
    cues = list(srt.parse((folder / "final.srt").read_text(encoding="utf-8")))
    spoken = " ".join(cue.content.replace("\n", " ") for cue in cues)
    for scene in script:
        assert (scene["narration"][:30] in spoken) == (scene["index"] in scenes_in_cut)
    assert cues[-1].end.total_seconds() <= duration + 0.05


@pytest.mark.slow
def test_a_mock_filtered_scene_makes_the_production_incomplete_and_a_retry_makes_it_done(tmp_path):
    out = str(tmp_path / "o")
    first = cli("--mock", "--topic", "how tea is made", "--scenes", "3", "--json", "-o", out)
    assert first.returncode == 0, first.stderr
    pid = summary(first)[0]["id"]
    filtered = cli("retry", pid, "--clip", "1", "--prompt", "the opening, told another way", "--mock", "--json",
                   "-o", out, env={"VEO3_MOCK_FILTER_RATE": "1"})
    assert filtered.returncode == 1, filtered.stderr
    prod = summary(filtered)[0]
    command = f"reelcrew retry {pid} --clip 1 --mock {REWORD}"
    assert prod["status"] == "incomplete" and prod["stage"] == "final" and prod["scenes_missing"] == [1]
    assert prod["retry_commands"] == [command] and command in filtered.stderr and "scene 1" in prod["error"]
    assert prod["final"] and prod["clips_filtered"] == 1
    check_cut(Path(prod["folder"]), [2, 3])  # the first scene is gone: the second's chapter starts at 00:00
    assert one_status(pid)["status"] == "incomplete"
    again = cli("--mock", "--topic", "how tea is made", "--scenes", "3", "--json", "-o", out)
    assert again.returncode == 1 and summary(again)[0]["status"] == "incomplete"  # not re-cut, not "done"
    fixed = cli("retry", pid, "--clip", "1", "--mock", "--json", "-o", out)
    assert fixed.returncode == 0, fixed.stderr
    prod = summary(fixed)[0]
    assert prod["status"] == "done" and prod["scenes_missing"] == [] and prod["error"] is None
    check_cut(Path(prod["folder"]), [1, 2, 3])


@pytest.mark.slow
def test_a_safety_filtered_clip_in_real_mode_gives_incomplete_exit_1_and_chapters_of_the_cut(real_env, fake):
    first = cli("--topic", "tea", "--scenes", "3", "--yes", "--json")
    assert first.returncode == 0, first.stderr
    pid = summary(first)[0]["id"]
    filtered = cli("retry", pid, "--clip", "2", "--prompt", "UNSAFE version of scene 2", "--yes", "--json")
    assert filtered.returncode == 1, filtered.stderr
    prod = summary(filtered)[0]
    command = f"reelcrew retry {pid} --clip 2 {REWORD}"
    assert prod["status"] == "incomplete" and prod["scenes_missing"] == [2] and prod["retry_commands"] == [command]
    check_cut(Path(prod["folder"]), [1, 3])
    status = one_status(pid)
    assert status["status"] == "incomplete" and status["final"] == prod["final"]
    assert cli("resume", "--yes").returncode == 0 and fake.accepted == 4  # resume leaves an incomplete one alone
    fixed = cli("retry", pid, "--clip", "2", "--prompt", "a calm wide shot of tea fields", "--yes", "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert summary(fixed)[0]["status"] == "done"
    check_cut(Path(summary(fixed)[0]["folder"]), [1, 2, 3])


@pytest.mark.slow
def test_until_script_is_paused_at_the_script_stage_and_resume_finishes_it(tmp_path):
    out = str(tmp_path / "o")
    stopped = cli("--mock", "--topic", "how tea is made", "--scenes", "1", "--until", "script", "--json", "-o", out)
    assert stopped.returncode == 0, stopped.stderr
    prod = summary(stopped)[0]
    assert (prod["status"], prod["stage"], prod["stopped_after"]) == ("paused", "script", "script")
    assert "--until script" in prod["error"] and prod["final"] is None
    status = one_status(prod["id"])
    assert (status["status"], status["stage"], status["stopped_after"]) == ("paused", "script", "script")
    resumed = cli("resume", "--mock", "--json", "-o", out)
    assert resumed.returncode == 0, resumed.stderr
    done = summary(resumed)[0]
    assert (done["status"], done["stopped_after"]) == ("done", None) and done["final"]


@pytest.mark.slow
def test_a_config_error_found_at_the_final_is_failed_with_stage_and_cause_not_interrupted(tmp_path):
    out = str(tmp_path / "o")
    clips = cli("--mock", "--topic", "tea", "--scenes", "1", "--until", "clips", "--json", "-o", out)
    assert clips.returncode == 0, clips.stderr
    pid = summary(clips)[0]["id"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("render:\n  edit: nosuchmodule_xyz:edit\n")
    refused = cli("--mock", "--topic", "tea", "--scenes", "1", "--config", str(bad), "-o", out)
    assert refused.returncode == 2 and "nosuchmodule_xyz" in refused.stderr  # the pre-flight: nothing claimed
    status = one_status(pid)
    assert (status["status"], status["stage"], status["final"]) == ("paused", "clips", None)
    (tmp_path / "failing_edit_xyz.py").write_text("def edit(composition, data):\n    raise ValueError('boom')\n")
    bad.write_text("render:\n  edit: failing_edit_xyz:edit\n")  # loads, then fails while the final is cut
    result = cli("--mock", "--topic", "tea", "--scenes", "1", "--config", str(bad), "--json", "-o", out,
                 env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1 and "failing_edit_xyz" in summary(result)[0]["error"], result.stdout
    status = one_status(pid)
    assert (status["status"], status["stage"], status["final"]) == ("failed", "final", None)
    assert "failing_edit_xyz" in status["error"] and "render.edit" in status["error"]
    fixed = cli("--mock", "--topic", "tea", "--scenes", "1", "--json", "-o", out)
    assert fixed.returncode == 0 and summary(fixed)[0]["status"] == "done"


@pytest.mark.slow
def test_status_never_lists_a_stale_or_deleted_final(tmp_path):
    out = str(tmp_path / "o")
    first = cli("--mock", "--topic", "tea", "--scenes", "1", "--json", "-o", out)
    assert first.returncode == 0, first.stderr
    pid, final = summary(first)[0]["id"], Path(summary(first)[0]["final"])
    (tmp_path / "boom_edit.py").write_text("def boom(composition, data):\n    raise RuntimeError('boom')\n")
    mock = {"VEO3_MOCK_MODE": "true", "REELCREW_LLM": "mock"}  # `assemble` has no --mock
    recut = cli("assemble", pid, "--edit", "boom_edit:boom", "-o", out, env=mock)
    assert recut.returncode == 1
    status = one_status(pid)
    assert final.exists() and status["final"] is None  # the file is the earlier cut's, not this state's
    assert (status["status"], status["stage"]) == ("failed", "final") and "boom" in status["error"]
    assert "earlier cut" in status["note"]
    assert cli("assemble", pid, "-o", out, env=mock).returncode == 0 and one_status(pid)["final"] == str(final)
    final.unlink()
    status = one_status(pid)
    assert status["final"] is None and "deleted" in status["note"]


def test_chapters_follow_the_scenes_that_are_in_the_cut():
    from reelcrew.assemble.chapters import ScenePlace, cut_chapters

    script = Script(title="t", hook="h", language="en",
                    scenes=[Scene(index=i, narration=f"n{i}", visual="v", duration=8) for i in (1, 2, 3, 4)])
    planned = [Chapter(start="00:00", title="intro"), Chapter(start="00:08", title="middle"),
               Chapter(start="00:24", title="end")]  # "middle" covers scenes 2 and 3
    # scene 2 missing, 0.5 s crossfades: scene 3 takes over at 7.75 s, scene 4 at 15.5 s; the video is 23.0 s
    places = [ScenePlace(1, 0.0, 8.0), ScenePlace(3, 7.75, 15.5), ScenePlace(4, 15.5, 23.0)]
    chapters = cut_chapters(planned, script, places, 23.0)
    assert [(c.start, c.title) for c in chapters] == [("00:00", "intro"), ("00:07", "middle"), ("00:15", "end")]
    without_first = cut_chapters(planned, script, [ScenePlace(3, 0.0, 8.0), ScenePlace(4, 7.75, 15.5)], 15.5)
    assert [(c.start, c.title) for c in without_first] == [("00:00", "middle"), ("00:07", "end")]
    shortened = cut_chapters(planned, script, places, 15.0)  # an edit function cut the video short
    assert [c.title for c in shortened] == ["intro", "middle"]
    assert cut_chapters(planned, script, [ScenePlace(1, 0.0, 8.0)], 8.0) == [Chapter(start="00:00", title="intro")]


@pytest.mark.slow
@pytest.mark.usefixtures("ledger_db")
def test_cancel_submits_nothing_new_lets_the_operation_at_veo_finish_and_retry_starts_it_again(real_env, fake):
    fake.script.latency = 120
    proc = subprocess.Popen([*RUN, "--topic", "tea", "--scenes", "3", "--yes", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, "VEO3_MAX_CONCURRENT": "1"})
    store = ledger()
    wait_until(lambda: len(store.receipts()) >= 1, "the first receipt", proc=proc)
    pid = store.all_productions()[0].id
    cancelled = cli("cancel", pid, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    prod = summary(cancelled)[0]
    assert prod["status"] == "cancelled" and "1 operation(s) already at Veo finish" in prod["error"]
    for op in fake.ops.values():  # Veo finishes the operation submitted before the cancel
        op["done_at"] = time.time()
    fake.script.latency = 0
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-1500:]
    assert json.loads(out)["productions"][0]["status"] == "cancelled"
    clips = one_status(pid)["clips"]
    made = [c for c in clips if c["status"] == "done"]  # whichever clip the one slot took first
    assert fake.accepted == 1 and len(made) == 1 and sorted(c["status"] for c in clips) == ["done", "paused", "paused"]
    assert all("cancelled" in c["error"] for c in clips if c["status"] == "paused")
    assert one_status(pid)["final"] is None and cli("resume", "--yes").returncode == 0 and fake.accepted == 1
    again = cli("retry", pid, "--yes", "--json")
    assert again.returncode == 0, again.stderr
    assert summary(again)[0]["status"] == "done" and fake.accepted == 3
