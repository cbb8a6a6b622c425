"""Captions: wrapped by pixel width (CJK included), split into readable chunks, drawn once as RGBA images.

The same cue list feeds the burned-in overlays and the `.srt`, so the sidecar's times are the
burned-in times by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageColor, ImageDraw, ImageFont

from reelcrew.assemble.fonts import Font
from reelcrew.assemble.words import Word, time_words
from reelcrew.settings import SubtitleStyle

CLOSING = set("，。！？、；：”’）》」』】…,.!?;:)]}%")
OPENING = set("“‘（《「『【([{")
TOKEN = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]"
                   r"|[^\s\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]+\s*|\s+")


@dataclass
class Cue:
    start: float
    end: float
    text: str  # with the line breaks it is drawn with
    words: list[list[Word]] = field(default_factory=list)  # per line, timed (karaoke and pop)

    def timed_words(self) -> list[list[Word]]:
        if not self.words:
            self.words = time_words(self.text.split("\n"), self.start, self.end)
        return self.words


def wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """Greedy wrap by rendered width; a closing punctuation mark never starts a line."""
    lines: list[str] = []
    line = ""
    for token in TOKEN.findall(text.strip()):
        candidate = line + token
        if line and font.getlength(candidate.rstrip()) > max_width and token.strip() and token[0] not in CLOSING:
            if line[-1:] in OPENING:  # keep an opening bracket with what follows
                lines.append(line[:-1].rstrip())
                line = line[-1] + token.lstrip()
            else:
                lines.append(line.rstrip())
                line = token.lstrip()
        else:
            line = candidate
    if line.strip():
        lines.append(line.rstrip())
    return lines


def chunk_cues(text: str, start: float, end: float, font: ImageFont.FreeTypeFont, max_width: float,
               max_lines: int) -> list[Cue]:
    """One cue for a short caption; a long one is split into chunks timed by their length."""
    lines = wrap(text, font, max_width)
    if not lines:
        return []
    groups = [lines[i:i + max_lines] for i in range(0, len(lines), max_lines)]
    weights = [max(1, sum(len(line) for line in group)) for group in groups]
    total, t, cues = sum(weights), start, []
    for group, weight in zip(groups, weights, strict=True):
        span = (end - start) * weight / total
        cues.append(Cue(round(t, 3), round(t + span, 3), "\n".join(group)))
        t += span
    cues[-1].end = round(end, 3)
    return cues


def _rgba(colour: str | None) -> tuple[int, int, int, int] | None:
    if not colour:
        return None
    colour = colour.strip()
    if re.fullmatch(r"#[0-9a-fA-F]{8}", colour):
        return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5, 7))  # type: ignore[return-value]
    return ImageColor.getcolor(colour, "RGBA")  # type: ignore[return-value]


def load_font(font: Font, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font.path, size, index=font.index)


def draw_text_image(text: str, font: ImageFont.FreeTypeFont, style: SubtitleStyle, stroke: int, pad: int,
                    opacity: float = 1.0) -> Image.Image:
    """Text (already wrapped) centred on a transparent or boxed RGBA image, sized to fit."""
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    left, top, right, bottom = probe.multiline_textbbox((0, 0), text, font=font, stroke_width=stroke, align="center",
                                                        spacing=font.size // 5)
    width, height = int(right - left) + 2 * pad, int(bottom - top) + 2 * pad
    image = Image.new("RGBA", (max(width, 1), max(height, 1)), _rgba(style.box_color) or (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.multiline_text((pad - left, pad - top), text, font=font, fill=_rgba(style.color), stroke_width=stroke,
                        stroke_fill=_rgba(style.stroke_color), align="center", spacing=font.size // 5)
    if opacity < 1:
        alpha = image.getchannel("A").point(lambda a: int(a * opacity))
        image.putalpha(alpha)
    return image


@dataclass
class WordBox:
    word: Word
    x: float  # left edge of the word's text in the image
    y: float  # top (ascender line) of its line
    width: float


def layout_words(cue: Cue, font: ImageFont.FreeTypeFont, stroke: int,
                 pad: int) -> tuple[tuple[int, int], list[WordBox]]:
    """Where each word of a cue sits in its image: lines centred, words at their place in the line's text.

    Every karaoke state of a cue is drawn from this one layout, so two states differ only in the
    words whose colour changed.
    """
    lines = cue.text.split("\n")
    ascent, descent = font.getmetrics()
    spacing = font.size // 5
    widths = [font.getlength(line) for line in lines]
    size = (int(max(widths) + 2 * (pad + stroke)) + 1,
            int(len(lines) * (ascent + descent) + (len(lines) - 1) * spacing + 2 * (pad + stroke)) + 1)
    boxes: list[WordBox] = []
    for j, (line, words) in enumerate(zip(lines, cue.timed_words(), strict=True)):
        x0 = (size[0] - widths[j]) / 2
        y = pad + stroke + j * (ascent + descent + spacing)
        cursor = 0
        for word in words:
            at = line.find(word.text, cursor)
            at = cursor if at < 0 else at
            boxes.append(WordBox(word, x0 + font.getlength(line[:at]), y, font.getlength(word.text)))
            cursor = at + len(word.text)
    return size, boxes


def draw_words_image(size: tuple[int, int], boxes: list[WordBox], font: ImageFont.FreeTypeFont, style: SubtitleStyle,
                     stroke: int, highlighted: int) -> Image.Image:
    """One karaoke state: the first `highlighted` words in the highlight colour, the rest in the text colour."""
    image = Image.new("RGBA", size, _rgba(style.box_color) or (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for k, box in enumerate(boxes):
        colour = style.highlight_color if k < highlighted else style.color
        draw.text((box.x, box.y), box.word.text, font=font, fill=_rgba(colour), stroke_width=stroke,
                  stroke_fill=_rgba(style.stroke_color), anchor="la")
    return image


def caption_position(image: Image.Image, frame_w: int, frame_h: int, style: SubtitleStyle) -> tuple[int, int]:
    margin = int(frame_h * (style.margin_9x16 if frame_h > frame_w else style.margin_16x9))
    x = (frame_w - image.width) // 2
    if style.position == "top":
        return x, margin
    if style.position == "middle":
        return x, (frame_h - image.height) // 2
    return x, frame_h - margin - image.height


def write_srt(cues: list[Cue], path: Path) -> None:
    import datetime as dt

    import srt

    subs = [srt.Subtitle(index=i, start=dt.timedelta(seconds=c.start), end=dt.timedelta(seconds=c.end), content=c.text)
            for i, c in enumerate(cues, start=1)]
    from reelcrew.files import part_path

    tmp = part_path(path)
    tmp.write_text(srt.compose(subs), encoding="utf-8")
    tmp.replace(path)
