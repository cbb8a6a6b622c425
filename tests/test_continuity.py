"""Continuity `last_frame` (issue 15): clip N+1 starts from clip N's last frame, through the real SDK against the
fake (which checks and records the `image` wire field on the Gemini API and on Vertex); a production's clips go in
order while two productions interleave; a filtered clip is skipped over; a run killed with SIGKILL in the middle
resumes in order and pays nothing twice; the mode is recorded per production; modes not built are refused before
any spend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reelcrew import mock_writer, service
from reelcrew.errors import ConfigError
from reelcrew.identity import production_id
from reelcrew.media import ffmpeg_exe, probe
from reelcrew.models import ClipStatus, FirstFrame, VideoPrompt
from reelcrew.results import ApprovalPolicy
from reelcrew.settings import load_settings
from tests.conftest import ROOT
from tests.waiting import wait_until

RUN = [sys.executable, str(ROOT / "run_integrated_pipeline.py")]
SMALL = "64:36"  # pictures are compared scaled down: the same pixels scale to the same bytes


def pixels(path: Path | bytes, last_second: bool = False) -> list[bytes]:
    """A picture (PNG bytes or file) or a video, decoded and scaled to 64x36 RGB: its frames (a video's first one,
    or every frame of its last second, decoded here independently of reelcrew's extraction)."""
    source = ["-i", "pipe:0"] if isinstance(path, bytes) else [*(["-sseof", "-1"] if last_second else []),
                                                                "-i", str(path)]
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", *source, "-vf", f"format=rgb24,scale={SMALL}", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], input=path if isinstance(path, bytes) else None,
                         capture_output=True, check=True).stdout
    size = 64 * 36 * 3
    frames = [raw[at:at + size] for at in range(0, len(raw), size)]
    return frames if last_second else frames[:1]


def difference(one: bytes, other: bytes) -> float:
    """Mean absolute difference of two pictures' channel values (0 to 255)."""
    return sum(abs(x - y) for x, y in zip(one, other, strict=True)) / len(one)


def is_last_frame(image: bytes, video: Path) -> bool:
    """The picture is the video's last frame: the same pixels (both decoded to RGB, then scaled alike), and closer
    to it than to any other frame of the clip's last second."""
    [picture], ending = pixels(image), pixels(video, last_second=True)
    distances = [difference(picture, frame) for frame in ending]
    return distances[-1] < 0.5 and distances[-1] == min(distances)


def run_in_process(settings, topics: list[str], store=None, script_edit=None):
    """Plan and run productions through the service (the local runner, as `reelcrew run --yes` does)."""
    store = store or service.open_store(settings)
    prods = service.plan(settings, topics, store)
    if script_edit is not None:
        for prod in prods:
            script = mock_writer.write_script(prod.topic, prod.language, settings.scenes, settings.clip_seconds,
                                              settings.style)
            script_edit(script)
            store.save_stage(prod.id, "script", script.model_dump_json(), 1)
    service.run(settings, prods, policy=ApprovalPolicy(yes=True), store=store)
    return store, prods


def requests_by_production(fake, store, prods) -> dict[str, list[dict]]:
    """The fake's accepted video requests of each production, in the order they were sent, with the clip index."""
    by_prompt = {}
    for prod in prods:
        for clip in store.production_clips(prod.id):
            by_prompt[clip.prompt.prompt] = (prod.id, clip.index)
    out: dict[str, list[dict]] = {p.id: [] for p in prods}
    for request in sorted(fake.video_requests, key=lambda r: r["at"]):
        pid, index = by_prompt[request["prompt"]]
        out[pid].append({**request, "index": index})
    return out


# -- the request carries the last frame ----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["gemini", "vertex"])
def test_clip_2_request_carries_clip_1_last_frame_and_clip_3_clip_2s(real_env, fake, request, backend):
    if backend == "vertex":
        request.getfixturevalue("vertex_project")
    settings = load_settings(scenes=3, clip_seconds=4, continuity="last_frame")
    store, [prod] = run_in_process(settings, ["how tea is made"])
    clips = store.production_clips(prod.id)
    assert [c.status for c in clips] == [ClipStatus.done] * 3
    sent = requests_by_production(fake, store, [prod])[prod.id]
    assert [r["index"] for r in sent] == [1, 2, 3] and fake.accepted == 3
    assert sent[0]["image"] is None  # clip 1 has nothing before it: text-to-video
    for before, after in zip(clips, sent[1:], strict=False):
        assert is_last_frame(after["image"], Path(before.path))
        width, height = probe(Path(before.path)).width, probe(Path(before.path)).height
        assert after["image"][16:24] == width.to_bytes(4, "big") + height.to_bytes(4, "big")  # PNG header: its size
    people = [r["params"].get("personGeneration") for r in sent]
    assert people == ([None, "allow_adult", "allow_adult"] if backend == "gemini" else [None, None, None])
    # the frame is saved beside the clips, its hash is in the clip key, and status and the manifest say so
    folder = Path(clips[0].path).parent
    assert sorted(p.name for p in folder.glob("*.png")) == ["clip-02.first.png", "clip-03.first.png"]
    assert [c.prompt.first_frame.from_index if c.prompt.first_frame else None for c in clips] == [None, 1, 2]
    text_only = clips[1].prompt.model_copy(update={"first_frame": None})
    assert text_only.clip_key(clips[1].model) != clips[1].key
    report = service.status(settings, prod.id, store).productions[0]
    assert report.continuity == "last_frame" and [c.starts_from for c in report.clips] == [None, 1, 2]
    manifest = json.loads((folder.parent / "manifest.json").read_text())
    assert manifest["production"]["continuity"] == "last_frame"
    assert manifest["clips"][2]["prompt"]["first_frame"]["from_index"] == 2


@pytest.mark.slow
def test_clips_of_one_production_go_in_order_while_two_productions_interleave(real_env, fake):
    fake.script.latency = 1.0  # each production's three clips take seconds: the other's are sent meanwhile
    settings = load_settings(scenes=3, clip_seconds=4, continuity="last_frame")
    store, prods = run_in_process(settings, ["how tea is made", "how rice grows"])
    sent = requests_by_production(fake, store, prods)
    ends = {}  # when each clip's operation ended at Veo, from the ledger
    for row in store.operation_rows():
        ends[row["clip_key"]] = row["ended_at"]
    for prod in prods:
        clips = store.production_clips(prod.id)
        assert [r["index"] for r in sent[prod.id]] == [1, 2, 3]
        for before, request in zip(clips, sent[prod.id][1:], strict=False):
            assert request["at"] >= ends[before.key]  # the next clip is sent once the previous one ended
            assert is_last_frame(request["image"], Path(before.path))
    first, second = (sorted(r["at"] for r in sent[p.id]) for p in prods)
    assert first[0] < second[-1] and second[0] < first[-1]  # neither production waited for the other's end
    assert fake.max_in_flight <= 2  # one clip of each production at a time


@pytest.mark.slow
def test_after_a_filtered_clip_2_clip_3_starts_from_clip_1s_last_frame(real_env, fake, monkeypatch):
    monkeypatch.setenv("VEO3_REPHRASE_ATTEMPTS", "0")  # the filtered scene stays filtered (rewrites: test_films)

    def filtered_scene_2(script):
        script.scenes[1].visual = "an UNSAFE close-up of a boiling kettle"

    settings = load_settings(scenes=3, clip_seconds=4, continuity="last_frame")
    store, [prod] = run_in_process(settings, ["how tea is made"], script_edit=filtered_scene_2)
    clips = store.production_clips(prod.id)
    assert [c.status for c in clips] == [ClipStatus.done, ClipStatus.filtered, ClipStatus.done]
    sent = requests_by_production(fake, store, [prod])[prod.id]
    assert [r["index"] for r in sent] == [1, 2, 3]
    assert is_last_frame(sent[1]["image"], Path(clips[0].path))
    assert is_last_frame(sent[2]["image"], Path(clips[0].path))  # the last good clip's end
    assert clips[2].prompt.first_frame.from_index == 1


@pytest.mark.slow
def test_a_run_killed_in_the_middle_resumes_in_order_and_pays_nothing_twice(real_env, fake, tmp_path):
    fake.script.latency = 2.0  # clip 2 is still at Veo when the run is killed
    env = {**os.environ, "CLIP_SECONDS": "4"}
    args = [*RUN, "run", "--topic", "how tea is made", "--scenes", "3", "--continuity", "last_frame", "--yes",
            "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=env, text=True)
    store = service.open_store(load_settings())  # the run's ledger (this test's HOME)

    def clip_2_at_veo() -> bool:  # its receipt committed: killed before that, the submit would be ambiguous
        return any(c.index == 2 and c.operation_name for p in store.all_productions()
                   for c in store.production_clips(p.id))

    wait_until(clip_2_at_veo, "clip 2's receipt", proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert fake.accepted == 2 and fake.video_requests[1]["image"] is not None
    fake.script.latency = 0.2
    resumed = subprocess.run([*RUN, "resume", "--yes", "--json"], capture_output=True, text=True, timeout=240,
                             env=env, stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    [prod] = json.loads(resumed.stdout)["productions"]
    assert prod["status"] == "done" and prod["continuity"] == "last_frame"
    assert fake.accepted == 3 and max(fake.accepted_by_prompt.values()) == 1  # clip 2 re-attached, not re-sent
    status = json.loads(subprocess.run([*RUN, "status", "--json"], capture_output=True, text=True, env=env,
                                       stdin=subprocess.DEVNULL).stdout)["productions"][0]
    assert [c["starts_from"] for c in status["clips"]] == [None, 1, 2]
    clips = Path(prod["folder"]) / "clips"
    assert is_last_frame(fake.video_requests[2]["image"], clips / "clip-02.mp4")
    assert is_last_frame(fake.video_requests[1]["image"], clips / "clip-01.mp4")
    assert probe(Path(prod["final"])).duration == pytest.approx(12, abs=0.1)


# -- the mode per production, and refusals before spend ---------------------------------------------------------
def test_the_mode_is_part_of_the_production_and_none_keeps_every_older_id(tmp_path):
    base = ("how tea is made", "en", 3, "16:9", "cinematic")
    assert production_id(*base) == production_id(*base, continuity=None)
    none, chained = (load_settings(continuity=mode, reelcrew_llm="mock", veo3_mock_mode=True)
                     for mode in ("none", "last_frame"))
    [old], [new] = (service.plan(s, ["how tea is made"]) for s in (none, chained))
    assert old.id != new.id and (old.continuity, new.continuity) == ("none", "last_frame")
    from reelcrew.identity import settings_for

    again = settings_for(none, service.open_store(none).production(new.id))  # resume with today's settings
    assert again.continuity == "last_frame" and again.reelcrew_clips_in_order
    assert not settings_for(chained, old).reelcrew_clips_in_order


@pytest.mark.parametrize(("mode", "env", "said"), [("references", {}, "has no images"),
                                                   ("extend", {"RESOLUTION": "1080p"}, "720p videos only")])
def test_a_mode_the_settings_cannot_serve_is_refused_before_anything_is_written_or_paid(real_env, fake, monkeypatch,
                                                                                       mode, env, said):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = subprocess.run([*RUN, "run", "--topic", "tea", "--continuity", mode, "--yes"], capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and said in result.stderr and "fix:" in result.stderr
    assert fake.submit_attempts == 0 and not fake.text_requests


def test_image_to_video_limits_are_checked_before_spend(real_env):
    from reelcrew.continuity import check

    with pytest.raises(ConfigError, match="veo3_person_generation=allow_all"):
        check(load_settings(continuity="last_frame", veo3_person_generation="allow_all"))
    check(load_settings(continuity="last_frame", clip_seconds=4))  # a first frame takes 4, 6 and 8 s


def test_a_mock_clip_given_a_first_frame_starts_with_that_picture(tmp_path):
    from reelcrew.continuity import extract_last_frame
    from reelcrew.video.mockclip import render_mock_clip

    first = VideoPrompt(index=1, scene_index=1, prompt="a red kettle", duration=4)
    render_mock_clip(first, tmp_path / "one.mp4", audio=False)
    digest = extract_last_frame(tmp_path / "one.mp4", tmp_path / "two.first.png")
    assert digest == extract_last_frame(tmp_path / "one.mp4", tmp_path / "again.png")  # the same frame, same key
    frame = FirstFrame(sha256=digest, path=str(tmp_path / "two.first.png"), from_key="k", from_index=1)
    second = VideoPrompt(index=2, scene_index=2, prompt="a blue cup", duration=4, first_frame=frame)
    plain = second.model_copy(update={"first_frame": None})
    render_mock_clip(second, tmp_path / "two.mp4", audio=False)
    render_mock_clip(plain, tmp_path / "plain.mp4", audio=False)
    end = pixels(tmp_path / "one.mp4", last_second=True)[-1]
    assert difference(pixels(tmp_path / "two.mp4")[0], end) < 3  # starts where the first ended
    assert difference(pixels(tmp_path / "plain.mp4")[0], end) > 20  # without it, a picture of its own
    assert probe(tmp_path / "two.mp4").duration == pytest.approx(4, abs=0.05)


@pytest.mark.slow
def test_the_api_creates_a_last_frame_production_and_refuses_a_mode_it_cannot_serve(tmp_path):
    from tests.web_helpers import LiveServer

    with LiveServer(tmp_path / "out") as live:
        client = live.client(live.token("olivia", "operator"))
        create = {"topics": ["how tea is made"], "mock": True, "scenes": 2}
        answer = client.post("/api/productions", json={**create, "continuity": "last_frame"})
        assert answer.status_code == 202, answer.text
        [prod] = answer.json()["productions"]
        done = live.wait_status(client, prod["id"], "done")
        assert done["continuity"] == "last_frame" and [c["starts_from"] for c in done["clips"]] == [None, 1]
        unknown = client.post("/api/productions", json={**create, "continuity": "sideways"})
        assert unknown.status_code == 422 and "continuity" in unknown.text
        later = client.post("/api/productions", json={**create, "topics": ["rice"], "continuity": "references"})
        assert later.status_code == 422 and "has no images" in later.text
        assert [p["topic"] for p in client.get("/api/productions").json()["productions"]] == ["how tea is made"]
