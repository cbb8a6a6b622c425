"""The cut's timeline on its own: where each clip sits, which frames it owns, when its caption shows."""

from __future__ import annotations

import pytest

from reelcrew.assemble.render import CutClip, CutSpec, _caption_layers, segments, timeline
from reelcrew.media import MediaInfo
from reelcrew.settings import TransitionStyle

FPS = 24


def infos(*durations: float) -> list[MediaInfo]:
    return [MediaInfo(duration=d, width=1280, height=720, fps=24.0, has_audio=True) for d in durations]


def test_clips_end_to_end_without_a_transition():
    assert timeline(infos(8, 8, 8), 0.0) == [(0, 8), (8, 16), (16, 24)]
    assert segments(infos(8, 8, 8), 0.0, FPS) == [(0, 192), (192, 192), (384, 192)]


def test_a_crossfade_overlaps_neighbours_and_shortens_the_cut():
    spans = timeline(infos(4, 4, 4), 0.5)
    assert spans == [(0, 4), (3.5, 7.5), (7, 11)]
    assert spans[-1][1] == 12 - 2 * 0.5


def test_a_crossfade_belongs_to_the_later_clip():
    # clip 1 owns 0-3.5 s, clip 2 the fade from 3.5 s and its body to 7 s, clip 3 from 7 s to the end
    assert segments(infos(4, 4, 4), 0.5, FPS) == [(0, 84), (84, 84), (168, 96)]


def test_a_single_clip_is_the_whole_cut():
    assert timeline(infos(6), 0.0) == [(0, 6)]
    assert segments(infos(6), 0.0, FPS) == [(0, 144)]


@pytest.mark.parametrize("durations,fade", [
    ((8, 8, 8, 8), 0.0),
    ((8, 8, 8, 8), 0.5),
    ((4.0, 3.0, 2.0416667), 0.0),  # a clip of 49 frames
    ((4.0, 3.0, 2.0416667), 0.3),
    ((3.97, 6.02, 5.51, 4.49, 8.0), 0.7),  # durations that do not fall on frame boundaries
])
def test_segments_tile_the_cut_with_no_gap_no_overlap_and_the_right_frame_count(durations, fade):
    plan = segments(infos(*durations), fade, FPS)
    total = timeline(infos(*durations), fade)[-1][1]
    assert plan[0][0] == 0
    for (first, count), (next_first, _) in zip(plan, plan[1:]):
        assert first + count == next_first  # contiguous: every frame of the cut is drawn exactly once
    assert all(count > 0 for _, count in plan)
    assert plan[-1][0] + plan[-1][1] == round(total * FPS)


def test_captions_change_mid_transition_and_never_overlap(tmp_path):
    spec = CutSpec(clips=[CutClip(path=tmp_path / f"{i}.mp4", caption=f"caption {i}") for i in range(3)],
                   transitions=TransitionStyle(kind="crossfade", duration=0.5))
    spans = timeline(infos(4, 4, 4), 0.5)
    layers, cues = _caption_layers(spec, spans, 0.5, tmp_path)
    assert [(c.start, c.end) for c in cues] == [(0.0, 3.75), (3.75, 7.25), (7.25, 11.0)]
    assert [(layer.start, layer.end) for layer in layers] == [(c.start, c.end) for c in cues]


def test_a_clip_without_a_caption_shows_none_and_keeps_the_others_in_place(tmp_path):
    texts = ["one", "", "three"]
    spec = CutSpec(clips=[CutClip(path=tmp_path / f"{i}.mp4", caption=text) for i, text in enumerate(texts)])
    _, cues = _caption_layers(spec, timeline(infos(8, 8, 8), 0.0), 0.0, tmp_path)
    assert [(c.start, c.end, c.text) for c in cues] == [(0.0, 8.0, "one"), (16.0, 24.0, "three")]


def test_a_long_caption_is_split_in_time_within_its_clip(tmp_path):
    long = "This caption is deliberately long so that it needs more than two lines of text " * 3
    spec = CutSpec(clips=[CutClip(path=tmp_path / "a.mp4", caption="short"),
                          CutClip(path=tmp_path / "b.mp4", caption=long)])
    _, cues = _caption_layers(spec, timeline(infos(8, 8), 0.0), 0.0, tmp_path)
    later = cues[1:]
    assert len(later) >= 2
    assert later[0].start == 8.0 and later[-1].end == 16.0
    for a, b in zip(later, later[1:]):
        assert a.end == b.start
