"""The cut's timeline on its own: where each clip sits, which frames it owns, when its caption shows.

No clip is decoded: the composition is built from probed durations (SourceClips open no reader until a
frame is asked for) and compiled to the ffmpeg plan the fast path renders.
"""

from __future__ import annotations

from itertools import pairwise

import pytest

from reelcrew.assemble.compiler import compile_video
from reelcrew.assemble.composition import build_composition, caption_layers, spans
from reelcrew.assemble.render import CutClip, CutSpec
from reelcrew.media import MediaInfo
from reelcrew.settings import TransitionStyle, WatermarkStyle

FPS = 24


def infos(*durations: float) -> list[MediaInfo]:
    return [MediaInfo(duration=d, width=1280, height=720, fps=24.0, has_audio=True) for d in durations]


def cut(tmp_path, count: int, kind: str = "none", fade: float = 0.5, captions: list[str] | None = None,
        per_clip: list[str | None] | None = None) -> CutSpec:
    """A cut of `count` clips (files never opened), no watermark, transitions `kind` of `fade` seconds."""
    captions = captions or [""] * count
    per_clip = per_clip or [None] * count
    return CutSpec(clips=[CutClip(path=tmp_path / f"{i}.mp4", caption=captions[i], transition=per_clip[i])
                          for i in range(count)],
                   transitions=TransitionStyle(kind=kind, duration=fade), watermark=WatermarkStyle(text=None))


def plan_frames(spec: CutSpec, durations) -> list[tuple[int, int]]:
    """(first frame, frame count) of each segment of the plan the fast path renders."""
    plan = compile_video(build_composition(spec, infos(*durations)).composition)
    return [(seg.first, seg.frames) for seg in plan.segments]


def test_clips_end_to_end_without_a_transition(tmp_path):
    spec = cut(tmp_path, 3)
    assert spans(spec, infos(8, 8, 8)) == [(0, 8), (8, 16), (16, 24)]
    assert plan_frames(spec, (8, 8, 8)) == [(0, 192), (192, 192), (384, 192)]


def test_a_crossfade_overlaps_neighbours_and_shortens_the_cut(tmp_path):
    places = spans(cut(tmp_path, 3, "crossfade", 0.5), infos(4, 4, 4))
    assert places == [(0, 4), (3.5, 7.5), (7, 11)]
    assert places[-1][1] == 12 - 2 * 0.5


@pytest.mark.parametrize("kind", ["fadeblack", "wipeleft", "circleopen"])
def test_every_registered_transition_overlaps_like_a_crossfade(tmp_path, kind):
    assert spans(cut(tmp_path, 3, kind, 0.5), infos(4, 4, 4)) == [(0, 4), (3.5, 7.5), (7, 11)]


def test_a_cut_kind_or_a_zero_duration_means_no_overlap(tmp_path):
    # the transition now comes from the registry: "none" is a plain cut whatever transitions.duration says
    assert spans(cut(tmp_path, 3, "none", 0.5), infos(4, 4, 4)) == [(0, 4), (4, 8), (8, 12)]
    assert spans(cut(tmp_path, 3, "crossfade", 0.0), infos(4, 4, 4)) == [(0, 4), (4, 8), (8, 12)]


def test_a_clip_s_own_transition_overrides_the_default_for_its_join_only(tmp_path):
    spec = cut(tmp_path, 3, "none", 0.5, per_clip=[None, "dissolve", None])
    assert spans(spec, infos(4, 4, 4)) == [(0, 4), (3.5, 7.5), (7.5, 11.5)]
    plan = compile_video(build_composition(spec, infos(4, 4, 4)).composition)
    assert [(seg.fade, seg.kind) for seg in plan.segments] == [(0.0, "fade"), (0.5, "dissolve"), (0.0, "fade")]


def test_an_unknown_transition_is_refused_with_the_names_that_exist():
    with pytest.raises(ValueError, match="unknown transition 'swirl'.*crossfade"):
        TransitionStyle(kind="swirl")


def test_a_crossfade_belongs_to_the_later_clip(tmp_path):
    # clip 1 owns 0-3.5 s, clip 2 the fade from 3.5 s and its body to 7 s, clip 3 from 7 s to the end
    spec = cut(tmp_path, 3, "crossfade", 0.5)
    assert plan_frames(spec, (4, 4, 4)) == [(0, 84), (84, 84), (168, 96)]
    segments = compile_video(build_composition(spec, infos(4, 4, 4)).composition).segments
    assert [seg.node.path.name for seg in segments] == ["0.mp4", "1.mp4", "2.mp4"]
    assert [seg.prev.path.name if seg.prev else None for seg in segments] == [None, "0.mp4", "1.mp4"]
    assert [seg.fade for seg in segments] == [0.0, 0.5, 0.5]
    assert [seg.prev_at for seg in segments] == [0.0, 3.5, 3.5]  # the outgoing clip's last half second


def test_a_single_clip_is_the_whole_cut(tmp_path):
    spec = cut(tmp_path, 1, "crossfade", 0.5)
    assert spans(spec, infos(6)) == [(0, 6)]
    assert plan_frames(spec, (6,)) == [(0, 144)]


@pytest.mark.parametrize("durations,fade", [
    ((8, 8, 8, 8), 0.0),
    ((8, 8, 8, 8), 0.5),
    ((4.0, 3.0, 2.0416667), 0.0),  # a clip of 49 frames
    ((4.0, 3.0, 2.0416667), 0.3),
    ((3.97, 6.02, 5.51, 4.49, 8.0), 0.7),  # durations that do not fall on frame boundaries
])
def test_segments_tile_the_cut_with_no_gap_no_overlap_and_the_right_frame_count(tmp_path, durations, fade):
    spec = cut(tmp_path, len(durations), "crossfade", fade)
    plan = compile_video(build_composition(spec, infos(*durations)).composition)
    frames = [(seg.first, seg.frames) for seg in plan.segments]
    total = spans(spec, infos(*durations))[-1][1]
    assert total == pytest.approx(sum(durations) - fade * (len(durations) - 1))
    assert plan.duration == pytest.approx(total)
    assert frames[0][0] == 0
    for (first, count), (next_first, _) in pairwise(frames):
        assert first + count == next_first  # contiguous: every frame of the cut is drawn exactly once
    assert all(count > 0 for _, count in frames)
    assert frames[-1][0] + frames[-1][1] == round(total * FPS)
    assert all(seg.node is not None for seg in plan.segments)  # no black filler between clips
    assert len(plan.segments) == len(durations)


def test_captions_change_mid_transition_and_never_overlap(tmp_path):
    spec = cut(tmp_path, 3, "crossfade", 0.5, captions=[f"caption {i}" for i in range(3)])
    layers, cues, _, _ = caption_layers(spec, spans(spec, infos(4, 4, 4)))
    assert [(c.start, c.end) for c in cues] == [(0.0, 3.75), (3.75, 7.25), (7.25, 11.0)]
    assert [(layer.start, layer.end) for layer in layers] == [(c.start, c.end) for c in cues]
    # and the plan the fast path renders draws each caption overlay exactly then (the last one to the end)
    plan = compile_video(build_composition(spec, infos(4, 4, 4)).composition)
    assert [(o.start, o.end) for o in plan.overlays] == [(0.0, 3.75), (3.75, 7.25), (7.25, None)]


def test_a_clip_without_a_caption_shows_none_and_keeps_the_others_in_place(tmp_path):
    spec = cut(tmp_path, 3, captions=["one", "", "three"])
    layers, cues, _, _ = caption_layers(spec, spans(spec, infos(8, 8, 8)))
    assert [(c.start, c.end, c.text) for c in cues] == [(0.0, 8.0, "one"), (16.0, 24.0, "three")]
    assert [(layer.start, layer.end) for layer in layers] == [(0.0, 8.0), (16.0, 24.0)]


def test_a_long_caption_is_split_in_time_within_its_clip(tmp_path):
    long = "This caption is deliberately long so that it needs more than two lines of text " * 3
    spec = cut(tmp_path, 2, captions=["short", long])
    _, cues, _, _ = caption_layers(spec, spans(spec, infos(8, 8)))
    assert (cues[0].start, cues[0].end, cues[0].text) == (0.0, 8.0, "short")
    later = cues[1:]
    assert len(later) >= 2
    assert later[0].start == 8.0 and later[-1].end == 16.0
    for a, b in pairwise(later):
        assert a.end == b.start
        assert a.end > a.start
    assert all(c.text.count("\n") < spec.subtitles.max_lines for c in later)  # each chunk fits the line limit
