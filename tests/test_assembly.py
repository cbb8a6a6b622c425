"""The final cut: duration, streams, overlays read back from frames, Chinese glyphs, mixed inputs, errors, srt."""

from __future__ import annotations

import datetime as dt
import re
import subprocess

import numpy as np
import pytest
import srt
from PIL import Image

from reelcrew.assemble import CutClip, CutSpec, render_cut
from reelcrew.assemble.captions import caption_position, draw_text_image, load_font, wrap
from reelcrew.assemble.fonts import find_font
from reelcrew.assemble.transitions import TRANSITIONS
from reelcrew.errors import AssemblyError
from reelcrew.media import ffmpeg_exe, probe, run_ffmpeg
from reelcrew.models import VideoPrompt
from reelcrew.settings import RenderStyle, SubtitleStyle, TransitionStyle, WatermarkStyle
from reelcrew.video.mockclip import render_mock_clip

ZH = "清晨的城市慢慢醒来"


def clip(tmp_path, i, aspect="16:9", duration=4):
    path = tmp_path / f"in{i}.mp4"
    prompt = VideoPrompt(index=i + 1, scene_index=i + 1, prompt=f"plain {i}", duration=duration, aspect_ratio=aspect)
    render_mock_clip(prompt, path)
    return path


def frame(video, t, w=1280, h=720) -> np.ndarray:
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", str(t), "-i", str(video), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
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
    for sub, cue in zip(subs, result.cues, strict=True):
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
    from tests.cli_helpers import cli_in_process

    a, b = clip(tmp_path, 0), clip(tmp_path, 1, aspect="9:16")
    result = cli_in_process("assemble", "--clips", str(a), str(b), "--captions", "第一句", "second line",
                            "--watermark", "ME", "--aspect", "9:16", "--output", str(tmp_path / "out.mp4"))
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


# --- the moviepy composition, its edit hook and its two render paths (issue 14) -----------------------------------

def psnr(a, b, start=0.0, end=None) -> float:
    """Mean PSNR (ffmpeg's, over Y, U and V) of two videos between start and end seconds."""
    trim = f"trim=start={start}" + (f":end={end}" if end else "") + ",setpts=PTS-STARTPTS"
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(a), "-i", str(b), "-lavfi",
                          f"[0:v]{trim}[x];[1:v]{trim}[y];[x][y]psnr", "-f", "null", "-"],
                         capture_output=True, text=True).stderr
    value = re.search(r"average:(\S+)", out).group(1)
    return float("inf") if value == "inf" else float(value)


def solid(tmp_path, name, colour="blue", seconds=4, size="1280x720"):
    path = tmp_path / f"{name}.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", f"color=c={colour}:s={size}:r=24:d={seconds}", "-f", "lavfi", "-i",
                f"sine=frequency=440:sample_rate=48000:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)], "test input")
    return path


def defined_test_cut(tmp_path, **render):
    """The defined test cut: three clips, crossfades, static captions, a watermark."""
    clips = [CutClip(path=clip(tmp_path, i), caption=f"caption {i} 清晨的城市") for i in range(3)]
    return CutSpec(clips=clips, transitions=TransitionStyle(kind="crossfade", duration=0.5),
                   render=RenderStyle(**render))




@pytest.mark.slow
def test_fast_and_moviepy_paths_give_the_same_frames(tmp_path):
    fast = render_cut(defined_test_cut(tmp_path), tmp_path / "fast.mp4")
    slow = render_cut(defined_test_cut(tmp_path, engine="moviepy"), tmp_path / "moviepy.mp4")
    assert (fast.path, slow.path) == ("fast", "moviepy")
    assert probe(tmp_path / "fast.mp4").duration == pytest.approx(probe(tmp_path / "moviepy.mp4").duration, abs=0.05)
    assert psnr(tmp_path / "fast.mp4", tmp_path / "moviepy.mp4") >= 35


def test_edit_hook_adds_a_title_card_and_keeps_the_fast_path(tmp_path):
    from reelcrew.assemble.hooks import load_edit
    from reelcrew.models import SeoPackage

    plain = render_cut(defined_test_cut(tmp_path), tmp_path / "plain.mp4")
    hook = load_edit("examples.title_card:add_title_card")
    seo = SeoPackage(title="Tea, step by step", description="d", tags=["t"], hashtags=["#t"])
    edited = render_cut(defined_test_cut(tmp_path), tmp_path / "edited.mp4", hook, {"seo": seo})
    assert edited.path == "fast" and edited.reason is None
    card = np.abs(frame(tmp_path / "edited.mp4", 0.5) - frame(tmp_path / "plain.mp4", 0.5)).mean(axis=2)
    assert card[300:420, 100:1180].mean() > 40  # the card's band across the middle in the first second
    assert card[600:700].mean() < 4  # the captions below it are untouched
    assert psnr(tmp_path / "plain.mp4", tmp_path / "edited.mp4", start=2) >= 40  # the rest of the cut is unchanged
    assert abs(probe(tmp_path / "edited.mp4").duration - plain.duration) < 0.05


class _Square:
    """An edit adding a moving red square drawn by a Python frame function from 1 s to 2 s."""

    def __call__(self, composition, data):
        from moviepy import VideoClip

        from reelcrew.assemble.composition import recompose

        square = VideoClip(frame_function=lambda t: np.tile(np.array([255, 0, 0], np.uint8), (100, 100, 1)),
                           duration=1.0).with_start(1.0).with_position(lambda t: (100 + round(200 * t), 100))
        return recompose(composition, [*composition.clips, square])


@pytest.mark.slow
def test_a_frame_function_takes_the_moviepy_path_with_the_same_frames_elsewhere(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="reelcrew.assemble")
    render_cut(defined_test_cut(tmp_path), tmp_path / "fast.mp4")
    result = render_cut(defined_test_cut(tmp_path), tmp_path / "custom.mp4", _Square())
    assert result.path == "moviepy" and "frame function" in result.reason
    assert any("moviepy path" in r.getMessage() for r in caplog.records)
    red = frame(tmp_path / "custom.mp4", 1.0)[110:190, 110:190]
    assert red[..., 0].mean() > 200 and red[..., 1].mean() < 60  # the square, drawn by Python
    assert psnr(tmp_path / "fast.mp4", tmp_path / "custom.mp4", start=2.2) >= 35
    assert psnr(tmp_path / "fast.mp4", tmp_path / "custom.mp4", end=0.9) >= 35


def test_an_edit_that_raises_fails_the_render_with_one_line_and_the_traceback_in_the_log(tmp_path, caplog):
    (tmp_path / "my_edits.py").write_text("def broken(composition, data):\n    raise ValueError('no title here')\n")
    from reelcrew.assemble.hooks import load_edit

    hook = load_edit("my_edits:broken")
    with pytest.raises(AssemblyError) as info:
        render_cut(defined_test_cut(tmp_path), tmp_path / "final.mp4", hook, edit_name="my_edits:broken")
    assert "my_edits:broken raised ValueError: no title here" in str(info.value) and "\n" not in info.value.problem
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Traceback" in logged and "raise ValueError('no title here')" in logged
    assert not list(tmp_path.glob("*final*"))


@pytest.mark.parametrize("spec,needle", [("nowhere.edits:title", "module 'nowhere' not found"),
                                          ("examples.title_card:missing", "has no function 'missing'"),
                                          ("examples.title_card", "package.module:function")])
def test_an_edit_that_cannot_be_loaded_is_a_config_error(spec, needle):
    from reelcrew.assemble.hooks import load_edit
    from reelcrew.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_edit(spec)


def test_a_missing_edit_function_exits_2_before_any_spend(real_env, fake, tmp_path):
    from tests.cli_helpers import cli_in_process
    from tests.conftest import ROOT

    config = tmp_path / "pipeline.yaml"
    text = (ROOT / "config" / "pipeline.yaml").read_text(encoding="utf-8")
    config.write_text(text.replace("  edit:  ", "  edit: my_edits.nothing:here  ", 1), encoding="utf-8")
    result = cli_in_process("--topic", "tea", "--scenes", "2", "--yes", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "my_edits" in result.stderr and fake.submit_attempts == 0


def _karaoke_cut(tmp_path, caption):
    from reelcrew.assemble.captions import layout_words

    style = SubtitleStyle(style="karaoke", box_color="#000000FF", highlight_color="#FFD21F", color="#FFFFFF")
    spec = CutSpec(clips=[CutClip(path=solid(tmp_path, "blue"), caption=caption)], subtitles=style,
                   watermark=WatermarkStyle(text=None))
    result = render_cut(spec, tmp_path / "final.mp4")
    (cue,) = result.cues
    pil = load_font(result.font, style.size)
    stroke, pad = style.stroke_width, round(style.size * 0.3)
    size, boxes = layout_words(cue, pil, stroke, pad)
    x, y = caption_position(Image.new("RGBA", size), 1280, 720, style)
    return tmp_path / "final.mp4", boxes, x, y, size


def _changed_columns(video, t1, t2):
    diff = np.abs(frame(video, t1) - frame(video, t2)).mean(axis=2)
    cols = np.nonzero((diff > 40).any(axis=0))[0]
    return diff, cols


def test_karaoke_frames_within_a_cue_differ_only_in_the_highlighted_words(tmp_path):
    video, boxes, x, y, size = _karaoke_cut(tmp_path, "one two three four")
    assert [b.word.text for b in boxes] == ["one", "two", "three", "four"]
    mid = [(b.word.start + b.word.end) / 2 for b in boxes]
    diff, cols = _changed_columns(video, mid[0], mid[2])  # "two" and "three" lit up in between
    left, right = x + boxes[1].x, x + boxes[2].x + boxes[2].width
    assert cols.size and left - 4 <= cols.min() and cols.max() <= right + 4
    assert (diff[y:y + size[1], int(left):int(right)] > 40).sum() > 300  # the glyphs of "two three" changed colour
    outside = np.ones_like(diff, bool)
    outside[y - 4:y + size[1] + 4, int(left) - 4:int(right) + 4] = False
    assert diff[outside].mean() < 1


def test_chinese_karaoke_lights_up_whole_words_from_the_segmenter(tmp_path):
    import jieba

    video, boxes, x, y, size = _karaoke_cut(tmp_path, ZH)
    assert [b.word.text for b in boxes] == jieba.lcut(ZH) == ["清晨", "的", "城市", "慢慢", "醒来"]
    city = boxes[2]
    _, cols = _changed_columns(video, (boxes[1].word.start + boxes[1].word.end) / 2,
                               (city.word.start + city.word.end) / 2)
    # both characters of 城市 change colour at the same moment: the change spans the word, not one character
    assert cols.min() <= x + city.x + 6 and cols.max() >= x + city.x + city.width - 6
    assert cols.max() - cols.min() >= city.width * 0.8


def test_pop_shows_one_word_at_a_time_and_the_ass_file_carries_the_word_timing(tmp_path):
    from reelcrew.assemble.ass import ass_text

    style = SubtitleStyle(style="pop", box_color="#000000FF")
    spec = CutSpec(clips=[CutClip(path=solid(tmp_path, "blue"), caption="alpha beta")], subtitles=style,
                   watermark=WatermarkStyle(text=None))
    result = render_cut(spec, tmp_path / "final.mp4")
    first, second = result.cues[0].timed_words()[0]
    wide = lambda t: np.nonzero((frame(tmp_path / "final.mp4", t).mean(axis=2) < 30).any(axis=0))[0]  # noqa: E731
    one = wide((first.start + first.end) / 2)
    assert one.size and (one.max() - one.min()) < 260  # one word's box, not the whole caption's
    karaoke = ass_text(result.cues, SubtitleStyle(style="karaoke"), result.font, 44, 1280, 720)
    assert "{\\k" in karaoke and karaoke.count("{\\k") == 2
    (tmp_path / "k.ass").write_text(karaoke, encoding="utf-8")
    burned = subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=c=blue:s=1280x720:d=1",
                             "-vf", "subtitles=k.ass", "-f", "null", "-"], cwd=tmp_path, capture_output=True, text=True)
    assert burned.returncode == 0, burned.stderr  # libass reads it


@pytest.fixture(scope="module")
def small_clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    return [solid(folder, f"c{i}", colour, seconds=2, size="320x180") for i, colour in enumerate(["red", "blue"])]


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(TRANSITIONS))
def test_each_registered_transition_renders_a_valid_cut_of_the_right_duration(tmp_path, small_clips, kind):
    from reelcrew.media import decodes

    spec = CutSpec(clips=[CutClip(path=p) for p in small_clips], width=320, height=180,
                   transitions=TransitionStyle(kind=kind, duration=0.5), watermark=WatermarkStyle(text=None))
    result = render_cut(spec, tmp_path / "final.mp4")
    info = probe(tmp_path / "final.mp4")
    assert result.path == "fast" and abs(info.duration - 3.5) <= 1 / 24 + 1e-6 and info.has_audio
    assert decodes(tmp_path / "final.mp4") is None
    middle = frame(tmp_path / "final.mp4", 1.75, 320, 180)
    assert middle.std() > 0 or kind in ("fadeblack", "fadewhite")  # mid-transition: not one flat clip (dips aside)


def test_title_and_end_cards_from_the_seo_title_and_the_channel(tmp_path):
    from reelcrew.settings import CardStyle

    spec = CutSpec(clips=[CutClip(path=solid(tmp_path, "blue"))], watermark=WatermarkStyle(text=None),
                   cards=CardStyle(title=True, title_seconds=1.0, end=True, end_seconds=1.0, channel="Tea Channel",
                                   background="#000000FF"), title="How tea is made")
    result = render_cut(spec, tmp_path / "final.mp4")
    assert result.path == "fast"
    start, middle, end = (frame(tmp_path / "final.mp4", t) for t in (0.5, 2.0, 3.6))
    assert start[:100].mean() < 10 and end[:100].mean() < 10  # the opaque cards cover the clip
    assert middle[:100, :, 2].mean() > 200  # between them, the blue clip
    assert start[300:420].max() > 200 and end[300:420].max() > 200  # white text on each card
    assert not np.array_equal(start[300:420], end[300:420])  # a title, then the channel


def test_a_custom_sound_is_mixed_by_moviepy_while_the_video_stays_on_the_fast_path(tmp_path, caplog):
    import logging

    from moviepy import AudioClip, CompositeAudioClip

    caplog.set_level(logging.INFO, logger="reelcrew.assemble")

    def add_beep(composition, data):  # a 1 kHz tone from 1 s to 2 s, made by a Python function
        beep = AudioClip(lambda t: np.stack([np.sin(2 * np.pi * 1000 * np.asarray(t))] * 2, axis=-1) * 0.5,
                         duration=1.0, fps=48000).with_start(1.0)
        sound = [composition.audio] if composition.audio is not None else []  # a silent clip has none
        return composition.with_audio(CompositeAudioClip([*sound, beep]))

    silent = tmp_path / "silent.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "color=c=blue:s=1280x720:r=24:d=3", "-c:v", "libx264", "-preset", "ultrafast",
                str(silent)], "test input")
    spec = CutSpec(clips=[CutClip(path=silent)], watermark=WatermarkStyle(text=None))
    result = render_cut(spec, tmp_path / "final.mp4", add_beep)
    assert result.path == "fast"
    assert any("soundtrack mixed by moviepy" in r.getMessage() for r in caplog.records)
    pcm = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "final.mp4"), "-f", "s16le", "-ac", "1",
                          "-ar", "48000", "-"], capture_output=True, check=True).stdout
    level = np.abs(np.frombuffer(pcm, np.int16).astype(float)).reshape(-1, 4800).mean(axis=1)  # per 0.1 s
    assert level[12:18].mean() > 3000 and level[:8].mean() < 100 and level[22:28].mean() < 100


def test_a_clip_can_bring_its_own_transition_and_a_mood_map_is_checked(tmp_path, small_clips):
    from reelcrew.errors import ConfigError
    from reelcrew.settings import load_settings

    red, blue = small_clips
    clips = [CutClip(path=red), CutClip(path=blue, transition="circleopen"), CutClip(path=red)]
    spec = CutSpec(clips=clips, width=320, height=180, transitions=TransitionStyle(kind="none", duration=0.5),
                   watermark=WatermarkStyle(text=None))
    render_cut(spec, tmp_path / "final.mp4")
    assert abs(probe(tmp_path / "final.mp4").duration - 5.5) <= 1 / 24 + 1e-6  # one 0.5 s overlap, then a cut
    config = tmp_path / "pipeline.yaml"
    config.write_text("transitions:\n  by_mood: {calm: dissolve, tense: spin}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="spin"):
        load_settings(config)


def test_an_edit_that_reorders_and_trims_clips_stays_on_the_fast_path(tmp_path, small_clips):
    from reelcrew.assemble.composition import recompose
    from reelcrew.assemble.nodes import SourceClip

    def swap_and_trim(composition, data):
        first, second = [c for c in composition.clips if isinstance(c, SourceClip)]
        return recompose(composition, [second.subclipped(0.5, 1.5).with_start(0),
                                       first.subclipped(0.5, 1.5).with_start(1.0)])

    spec = CutSpec(clips=[CutClip(path=p) for p in small_clips], width=320, height=180,
                   watermark=WatermarkStyle(text=None))
    result = render_cut(spec, tmp_path / "final.mp4", swap_and_trim)
    assert result.path == "fast"
    info = probe(tmp_path / "final.mp4")
    assert abs(info.duration - 2.0) <= 1 / 24 + 1e-6 and info.has_audio
    early, late = frame(tmp_path / "final.mp4", 0.5, 320, 180), frame(tmp_path / "final.mp4", 1.5, 320, 180)
    assert early[..., 2].mean() > 200 and early[..., 0].mean() < 50  # blue (the second clip) first
    assert late[..., 0].mean() > 200 and late[..., 2].mean() < 50  # then red
