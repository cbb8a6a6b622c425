"""The cut as moviepy objects: what a user's edit function receives and returns.

One `CompositeVideoClip` (black background) of SourceClips laid end to end or overlapping by their
transitions, then image layers (captions, watermark, cards) drawn by Pillow as `ImageClip`s with a
start, a duration, a position and an opacity; its audio is a `CompositeAudioClip` of the clips' sound
and the music bed. Nothing here decodes a frame: rendering is the renderer's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from moviepy import CompositeAudioClip, CompositeVideoClip, ImageClip
from PIL import Image

from reelcrew.assemble.captions import (
    Cue,
    caption_position,
    chunk_cues,
    draw_text_image,
    draw_words_image,
    layout_words,
    load_font,
)
from reelcrew.assemble.fonts import Font, fit_text
from reelcrew.assemble.nodes import MusicBed, SourceAudio, SourceClip
from reelcrew.assemble.transitions import lookup
from reelcrew.errors import AssemblyError
from reelcrew.media import MediaInfo


@dataclass
class Built:
    composition: CompositeVideoClip
    cues: list[Cue]
    font: Font | None  # the captions' font (for the .ass file)
    font_size: int


def image_layer(image: Image.Image, start: float, duration: float | None, position: tuple[int, int]) -> ImageClip:
    """A Pillow RGBA image as a moviepy layer (its alpha becomes the mask)."""
    clip = ImageClip(np.asarray(image.convert("RGBA"))).with_start(start).with_position(position)
    return clip.with_duration(duration) if duration is not None else clip


def incoming(spec, index: int) -> tuple[str | None, float]:
    """The transition bringing clip `index` in, and its length (0 for a cut)."""
    if index == 0:
        return None, 0.0
    kind = spec.clips[index].transition or spec.transitions.kind
    if lookup(kind) is None or spec.transitions.duration <= 0:
        return None, 0.0
    return kind, spec.transitions.duration


def spans(spec, infos: list[MediaInfo]) -> list[tuple[float, float]]:
    """Where each clip sits in the cut, overlapping its neighbour by its transition."""
    out, t = [], 0.0
    for i, info in enumerate(infos):
        t -= incoming(spec, i)[1]
        out.append((t, t + info.duration))
        t += info.duration
    return out


def caption_layers(spec, spans_: list[tuple[float, float]]) -> tuple[list[ImageClip], list[Cue], Font | None, int]:
    texts = [c.caption.strip() for c in spec.clips]
    if not any(texts):
        return [], [], None, 0
    style = spec.subtitles
    fitted = fit_text("".join(texts), style.font, "captions")
    font = fitted.font
    scale = min(spec.width, spec.height) / 720
    size = max(12, round(style.size * scale))
    pil_font = load_font(font, size)
    stroke, pad = round(style.stroke_width * scale), round(style.size * scale * 0.3)
    layers, cues = [], []
    for i, (text, (start, end)) in enumerate(zip(texts, spans_, strict=True)):
        if not text:
            continue
        start += incoming(spec, i)[1] / 2  # captions change mid-transition, never overlap
        end -= incoming(spec, i + 1)[1] / 2 if i + 1 < len(spans_) else 0.0
        for cue in chunk_cues(text, start, end, pil_font, spec.width * style.max_width - 2 * pad, style.max_lines):
            cues.append(cue)  # as written: the .srt keeps what no font can draw
            if fitted.dropped:
                cue = Cue(cue.start, cue.end, fitted.drawn(cue.text))
                if not cue.text:
                    continue
            if style.style == "static":
                image = draw_text_image(cue.text, pil_font, style, stroke, pad)
                layers.append(image_layer(image, cue.start, cue.end - cue.start,
                                          caption_position(image, spec.width, spec.height, style)))
                continue
            box_size, boxes = layout_words(cue, pil_font, stroke, pad)
            for k, box in enumerate(boxes):
                word = box.word
                if style.style == "karaoke":
                    image = draw_words_image(box_size, boxes, pil_font, style, stroke, k + 1)
                else:  # pop: the word alone
                    image = draw_text_image(word.text, pil_font, style, stroke, pad)
                layers.append(image_layer(image, word.start, word.end - word.start,
                                          caption_position(image, spec.width, spec.height, style)))
    return layers, cues, font, size


def watermark_layer(spec, total: float) -> ImageClip | None:
    wm = spec.watermark
    if wm.image:
        src = Path(wm.image).expanduser()
        if not src.exists():
            raise AssemblyError(f"watermark image {src} does not exist", "fix watermark.image in config/pipeline.yaml")
        logo = Image.open(src).convert("RGBA")
        width = max(8, int(spec.width * wm.scale))
        logo = logo.resize((width, max(1, logo.height * width // logo.width)), Image.Resampling.LANCZOS)
        logo.putalpha(logo.getchannel("A").point(lambda a: int(a * wm.opacity)))
    elif wm.text:
        from reelcrew.settings import SubtitleStyle

        fitted = fit_text(wm.text, None, "watermark.text")
        if not fitted.drawn(wm.text):
            return None
        size = max(12, round(28 * min(spec.width, spec.height) / 720))
        style = SubtitleStyle(color="#FFFFFF", stroke_color="#000000", box_color=None)
        logo = draw_text_image(fitted.drawn(wm.text), load_font(fitted.font, size), style, max(1, size // 14), 2,
                               wm.opacity)
    else:
        return None
    m = wm.margin
    x = m if "left" in wm.corner else spec.width - logo.width - m
    y = m if "top" in wm.corner else spec.height - logo.height - m
    return image_layer(logo, 0, total, (x, y))


def build_composition(spec, infos: list[MediaInfo]) -> Built:
    """The cut as moviepy objects, before any user edit."""
    from reelcrew.assemble.cards import card_layers

    W, H, fps = spec.width, spec.height, spec.render.fps
    places = spans(spec, infos)
    sources = []
    for i, (clip, info, (start, _)) in enumerate(zip(spec.clips, infos, places, strict=True)):
        kind, fade = incoming(spec, i)
        sources.append(SourceClip(clip.path, info, (W, H), fps, spec.render.fit, kind, fade).with_start(start))
    total = places[-1][1]
    captions, cues, font, size = caption_layers(spec, places)
    layers = [*sources, *captions]
    mark = watermark_layer(spec, total)
    if mark is not None:
        layers.append(mark)
    layers += card_layers(spec, total)
    composition = CompositeVideoClip(layers, size=(W, H), bg_color=(0, 0, 0))
    composition = composition.with_audio(soundtrack(sources, spec.music, total))
    return Built(composition, cues, font, size)


def soundtrack(videos, music, total: float, keep=()) -> CompositeAudioClip | None:
    """The clips' sound where the clips are, the music bed under it all, and any other parts in `keep`."""
    parts = [v.audio for v in videos if getattr(v, "audio", None) is not None]
    if music is not None and getattr(music, "file", None):
        src = Path(music.file).expanduser()
        if not src.exists():
            raise AssemblyError(f"music file {src} does not exist", "fix music.file in config/pipeline.yaml")
        parts.append(MusicBed(src, total, music.volume, music.fade))
    parts += list(keep)
    return CompositeAudioClip(parts) if parts else None


def recompose(composition: CompositeVideoClip, clips: list) -> CompositeVideoClip:
    """A new composition of `clips` for an edit function: same size, black background, sound that follows.

    The clips' sounds come from the clips (so a moved clip takes its sound along), the music bed is
    stretched to the new length, and any other audio of the old composition is kept where it was.
    """
    new = CompositeVideoClip(list(clips), size=composition.size, bg_color=(0, 0, 0))
    old = composition.audio.clips if isinstance(composition.audio, CompositeAudioClip) else (
        [composition.audio] if composition.audio is not None else [])
    keep, music = [], None
    for part in old:
        if isinstance(part, MusicBed):
            music = part
        elif not isinstance(part, SourceAudio):
            keep.append(part)
    parts = [c.audio for c in clips if getattr(c, "audio", None) is not None]
    if music is not None:
        parts.append(MusicBed(music.path, new.duration, music.volume, music.fade))
    parts += keep
    return new.with_audio(CompositeAudioClip(parts) if parts else None)
