"""final.ass beside final.srt: the same cues, styled, for players that show styled subtitles.

Karaoke cues carry `\\k` timings per word (the word turns from the text colour to the highlight colour
when spoken, as burned in); pop cues become one event per word. libass sizes a font by its line height,
Pillow by its em, so the size is converted with the font's own metrics to match the burned-in text.
"""

from __future__ import annotations

from pathlib import Path

from reelcrew.assemble.captions import Cue, _rgba
from reelcrew.assemble.fonts import Font
from reelcrew.files import part_path


def _colour(value: str | None, default: tuple[int, int, int, int] = (0, 0, 0, 0)) -> str:
    r, g, b, a = _rgba(value) or default
    return f"&H{255 - a:02X}{b:02X}{g:02X}{r:02X}"


def _time(t: float) -> str:
    cs = max(0, round(t * 100))
    return f"{cs // 360000}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"


def font_facts(font: Font | None) -> tuple[str, float]:
    """Family name and line height per em of a font file (what libass needs to match Pillow's size)."""
    if font is None:
        return "Sans", 1.2
    from fontTools.ttLib import TTFont

    kwargs = {"fontNumber": font.index} if font.path.lower().endswith((".ttc", ".otc")) else {}
    with TTFont(font.path, lazy=True, **kwargs) as tt:
        family = tt["name"].getBestFamilyName() or "Sans"
        os2 = tt["OS/2"] if "OS/2" in tt else None
        if os2 is not None and os2.usWinAscent:
            height = os2.usWinAscent + os2.usWinDescent
        else:
            height = tt["hhea"].ascent - tt["hhea"].descent
        return family, height / tt["head"].unitsPerEm


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("{", "(").replace("}", ")").replace("\n", "\\N")


def ass_text(cues: list[Cue], style, font: Font | None, size: int, width: int, height: int) -> str:
    family, line = font_facts(font)
    box = _rgba(style.box_color)
    margin = round(height * (style.margin_9x16 if height > width else style.margin_16x9))
    align = {"bottom": 2, "middle": 5, "top": 8}[style.position]
    scale = min(width, height) / 720
    primary = style.highlight_color if style.style == "karaoke" else style.color
    border_style, outline_colour = (3, _colour(style.box_color)) if box else (1, _colour(style.stroke_color))
    outline = round(style.size * scale * 0.3) if box else round(style.stroke_width * scale)
    head = [
        "[Script Info]", "ScriptType: v4.00+", f"PlayResX: {width}", f"PlayResY: {height}", "WrapStyle: 2",
        "ScaledBorderAndShadow: yes", "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
        "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, "
        "MarginR, MarginV, Encoding",
        f"Style: Default,{family},{round(size * line)},{_colour(primary)},{_colour(style.color)},{outline_colour},"
        f"{_colour(style.box_color)},0,0,0,0,100,100,0,0,{border_style},{outline},0,{align},10,10,{margin},1",
        "", "[Events]", "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    events = []
    for cue in cues:
        if style.style == "static":
            events.append((cue.start, cue.end, _escape(cue.text)))
        elif style.style == "pop":
            events += [(w.start, w.end, _escape(w.text)) for line_words in cue.timed_words() for w in line_words]
        else:
            lines = cue.text.split("\n")
            parts = []
            for j, (text, words) in enumerate(zip(lines, cue.timed_words(), strict=True)):
                cursor = 0
                for w in words:
                    at = text.find(w.text, cursor)
                    at = cursor if at < 0 else at
                    lead = text[cursor:at]  # the space before a word is part of it on screen
                    parts.append(f"{{\\k{max(1, round((w.end - w.start) * 100))}}}{_escape(lead + w.text)}")
                    cursor = at + len(w.text)
                if j < len(lines) - 1:
                    parts.append("\\N")
            events.append((cue.start, cue.end, "".join(parts)))
    body = [f"Dialogue: 0,{_time(a)},{_time(b)},Default,,0,0,0,,{text}" for a, b, text in events]
    return "\n".join(head + body) + "\n"


def write_ass(cues: list[Cue], path: Path, style, font: Font | None, size: int, width: int, height: int) -> None:
    tmp = part_path(path)
    tmp.write_text(ass_text(cues, style, font, size, width, height), encoding="utf-8")
    tmp.replace(path)
