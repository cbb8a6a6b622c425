"""The final cut: duration, streams, overlays read back from frames, Chinese glyphs, mixed inputs, errors, srt."""

from __future__ import annotations

import datetime as dt
import subprocess

import numpy as np
import pytest
import srt
from PIL import Image

from reelcrew.assemble import CutClip, CutSpec, render_cut
from reelcrew.assemble.captions import caption_position, draw_text_image, load_font, wrap
from reelcrew.assemble.fonts import find_font
from reelcrew.errors import AssemblyError
from reelcrew.media import ffmpeg_exe, probe, run_ffmpeg
from reelcrew.models import VideoPrompt
from reelcrew.settings import SubtitleStyle, TransitionStyle, WatermarkStyle
from reelcrew.video.mockclip import render_mock_clip

ZH = "清晨的城市慢慢醒来"


def clip(tmp_path, i, aspect="16:9", duration=4):
    path = tmp_path / f"in{i}.mp4"
    render_mock_clip(VideoPrompt(index=i + 1, scene_index=i + 1, prompt=f"plain {i}", duration=duration, aspect_ratio=aspect), path)
    return path


def frame(video, t, w=1280, h=720) -> np.ndarray:
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", str(t), "-i", str(video), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(h, w, 3).astype(int)


def streams(path):
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return out.count("Video:"), out.count("Audio:")


def test_crossfaded_cut_has_the_right_duration_streams_and_size(tmp_path):
    clips = [CutClip(path=clip(tmp_path, i), caption=f"caption {i}") for i in range(3)]
    spec = CutSpec(clips=clips, transitions=TransitionStyle(kind="crossfade", duration=0.5))
    result = render_cut(spec, tmp_path / "final.mp4")
    info = probe(tmp_path / "final.mp4")
    assert abs(info.duration - (12 - 2 * 0.5)) <= 1 / 24 + 1e-6
    assert (info.width, info.height) == (1280, 720)
    assert streams(tmp_path / "final.mp4") == (1, 1)
    assert [round(c.start, 2) for c in result.cues] == [0.0, 3.75, 7.25]


def test_watermark_and_subtitles_appear_where_and_when_expected(tmp_path):
    clips = [CutClip(path=clip(tmp_path, 0), caption="Hello world"), CutClip(path=clip(tmp_path, 1), caption="")]
    style = SubtitleStyle(box_color="#000000FF", color="#FFFFFF")
    spec = CutSpec(clips=clips, subtitles=style, watermark=WatermarkStyle(text="WM", corner="top-right", opacity=1.0))
    render_cut(spec, tmp_path / "final.mp4")
    final = tmp_path / "final.mp4"
    # difference from the source frame at the same moment: what the cut added
    added_1 = np.abs(frame(final, 2) - frame(tmp_path / "in0.mp4", 2)).mean(axis=2)
    added_2 = np.abs(frame(final, 6) - frame(tmp_path / "in1.mp4", 2)).mean(axis=2)
    low = slice(720 - int(720 * 0.06) - 40, 720 - int(720 * 0.06))
    assert added_1[low, 400:880].mean() > 40  # the caption, during clip 1
    assert added_2[low, 400:880].mean() < 8  # no caption during clip 2
    for added in (added_1, added_2):  # the watermark in its corner all along, nothing in the opposite one
        assert added[20:70, 1150:1260].mean() > 10
        assert added[20:70, 20:130].mean() < 8


def test_chinese_caption_renders_as_glyphs_not_boxes(tmp_path):
    style = SubtitleStyle(box_color="#000000FF")
    pad = round(style.size * 0.3)  # as the renderer draws it at 720p

    def rendering(font) -> np.ndarray:
        return np.asarray(draw_text_image(ZH, load_font(font, style.size), style, style.stroke_width, pad)
                          .convert("L")).astype(int)

    glyphs = rendering(find_font(ZH))  # what the CJK font draws
    tofu = rendering(find_font("abc", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"))  # boxes: no hanzi in it
    path = tmp_path / "in0.mp4"
    render_mock_clip(VideoPrompt(index=1, scene_index=1, prompt="x", duration=4), path)
    render_cut(CutSpec(clips=[CutClip(path=path, caption=ZH)], subtitles=style, watermark=WatermarkStyle(text=None)),
               tmp_path / "final.mp4")
    got = frame(tmp_path / "final.mp4", 2).mean(axis=2)

    def burned_in_like(expected: np.ndarray) -> float:
        """Correlation of the frame, cropped where the renderer would put this image, with the image."""
        x, y = caption_position(Image.new("L", expected.shape[::-1]), 1280, 720, style)
        region = got[y:y + expected.shape[0], x:x + expected.shape[1]]
        assert region.shape == expected.shape
        return float(np.corrcoef(region.ravel(), expected.ravel())[0, 1])

    # measured: 0.9996 for the glyphs and 0.09 for the boxes; a cut burned with DejaVu scores 0.09 and 0.84
    assert burned_in_like(glyphs) > 0.9  # the caption is the CJK font's rendering (video compression aside)
    assert burned_in_like(tofu) < 0.5  # and not what a font without hanzi draws
    assert not find_font(ZH).path.lower().startswith("/usr/share/fonts/truetype/dejavu")


def test_text_no_font_can_draw_is_reported_before_rendering(tmp_path):
    with pytest.raises(AssemblyError, match="cannot draw"):
        find_font(ZH, "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def test_cjk_wrapping_keeps_closing_punctuation_on_its_line():
    pil = load_font(find_font(ZH), 44)
    lines = wrap("第一段：清晨的城市慢慢醒来，街角的咖啡店开门了，孩子们跑向学校。", pil, 500)
    assert len(lines) > 1 and all(line[0] not in "，。：" for line in lines)


def test_mixed_inputs_portrait_small_and_silent_clips_in_one_cut(tmp_path):
    portrait = clip(tmp_path, 0, aspect="9:16")
    small = tmp_path / "small.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=s=640x480:r=30:d=3", "-f", "lavfi", "-i", "sine=d=3",
                "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(small)], "test input")
    silent = tmp_path / "silent.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "color=c=red:s=1280x720:r=24:d=2", "-c:v", "libx264", "-preset", "ultrafast",
                str(silent)], "test input")
    spec = CutSpec(clips=[CutClip(path=p) for p in (portrait, small, silent)], watermark=WatermarkStyle(text=None))
    render_cut(spec, tmp_path / "final.mp4")
    info = probe(tmp_path / "final.mp4")
    assert (info.width, info.height, info.fps, info.has_audio) == (1280, 720, 24.0, True)
    assert abs(info.duration - 9.0) <= 1 / 24 + 1e-6


def test_corrupt_clip_is_a_clear_error_and_leaves_no_final(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    spec = CutSpec(clips=[CutClip(path=clip(tmp_path, 0)), CutClip(path=bad)])
    with pytest.raises(AssemblyError, match="broken.mp4"):
        render_cut(spec, tmp_path / "final.mp4")
    assert not list(tmp_path.glob("*final*"))


def test_srt_parses_and_matches_the_burned_in_cues(tmp_path):
    from reelcrew.assemble.captions import write_srt

    long = "This caption is deliberately long so that it needs more than two lines of text " * 2
    clips = [CutClip(path=clip(tmp_path, i), caption=c) for i, c in enumerate([long, ZH])]
    result = render_cut(CutSpec(clips=clips), tmp_path / "final.mp4")
    write_srt(result.cues, tmp_path / "final.srt")
    subs = list(srt.parse((tmp_path / "final.srt").read_text(encoding="utf-8")))
    assert len(subs) == len(result.cues) >= 3  # the long caption was split into readable chunks
    for sub, cue in zip(subs, result.cues):
        assert abs(sub.start - dt.timedelta(seconds=cue.start)) < dt.timedelta(milliseconds=2)
        assert sub.content == cue.text
    assert subs[-1].end == dt.timedelta(seconds=8)


def test_music_is_looped_under_the_clips_and_the_cut_keeps_its_length(tmp_path):
    from reelcrew.settings import MusicStyle

    music = tmp_path / "music.m4a"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=880:duration=3", "-c:a", "aac", str(music)], "test music")
    silent = tmp_path / "silent.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "color=c=blue:s=1280x720:r=24:d=4", "-c:v", "libx264", "-preset", "ultrafast",
                str(silent)], "test input")
    spec = CutSpec(clips=[CutClip(path=silent), CutClip(path=silent)], watermark=WatermarkStyle(text=None),
                   music=MusicStyle(file=str(music), volume=0.5, fade=0.5))
    render_cut(spec, tmp_path / "final.mp4")
    assert abs(probe(tmp_path / "final.mp4").duration - 8.0) <= 1 / 24 + 1e-6
    pcm = subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", "5", "-t", "1", "-i", str(tmp_path / "final.mp4"),
                          "-f", "s16le", "-ac", "1", "-"], capture_output=True, check=True).stdout
    level = np.abs(np.frombuffer(pcm, np.int16)).mean()
    assert level > 500  # the music loops past its 3 s under silent clips


def test_reelcrew_assemble_cuts_loose_files_from_the_command_line(tmp_path):
    import sys

    from tests.conftest import ROOT

    a, b = clip(tmp_path, 0), clip(tmp_path, 1, aspect="9:16")
    result = subprocess.run([sys.executable, str(ROOT / "run_integrated_pipeline.py"), "assemble", "--clips", str(a),
                             str(b), "--captions", "第一句", "second line", "--watermark", "ME",
                             "--aspect", "9:16", "--output", str(tmp_path / "out.mp4")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    info = probe(tmp_path / "out.mp4")
    assert (info.width, info.height) == (720, 1280) and abs(info.duration - 8) <= 1 / 24 + 1e-6
    subs = list(srt.parse((tmp_path / "out.srt").read_text(encoding="utf-8")))
    assert [s.content for s in subs] == ["第一句", "second line"]


def test_png_logo_watermark_in_its_corner_and_loudness_normalised_audio(tmp_path):
    from reelcrew.settings import MusicStyle

    logo = tmp_path / "logo.png"
    Image.new("RGBA", (200, 100), (255, 0, 0, 255)).save(logo)
    source = clip(tmp_path, 0)
    spec = CutSpec(clips=[CutClip(path=source)], music=MusicStyle(normalize_loudness=True),
                   watermark=WatermarkStyle(image=str(logo), corner="bottom-left", margin=10, scale=0.1, opacity=1.0))
    render_cut(spec, tmp_path / "final.mp4")
    f = frame(tmp_path / "final.mp4", 1)
    logo_h = 128 * 100 // 200  # 10 % of 1280 wide, aspect kept
    red = f[720 - 10 - logo_h + 4:720 - 14, 14:10 + 124]
    assert red[..., 0].mean() > 200 and red[..., 1].mean() < 60
    assert streams(tmp_path / "final.mp4") == (1, 1)
