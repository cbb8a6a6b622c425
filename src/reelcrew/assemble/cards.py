"""Title and end cards: full-frame image layers over the first and last seconds of the cut.

Cards lie over the video (their background is translucent by default) instead of adding time, so the
clips, their sound and the captions keep their places and the fast path draws them as overlays.
"""

from __future__ import annotations

from pathlib import Path

from moviepy import ImageClip
from PIL import Image

from reelcrew.assemble.captions import _rgba, draw_text_image, load_font, wrap
from reelcrew.assemble.fonts import fit_text
from reelcrew.errors import AssemblyError


def draw_card(width: int, height: int, text: str | None, style, logo: str | None = None) -> Image.Image:
    """A card: background colour, an optional logo, then the text centred below it."""
    card = Image.new("RGBA", (width, height), _rgba(style.background) or (0, 0, 0, 192))
    from reelcrew.settings import SubtitleStyle

    pieces: list[Image.Image] = []
    if logo:
        src = Path(logo).expanduser()
        if not src.exists():
            raise AssemblyError(f"card logo {src} does not exist", "fix cards.logo in config/pipeline.yaml")
        image = Image.open(src).convert("RGBA")
        side = round(min(width, height) * 0.3)
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
        pieces.append(image)
    fitted = fit_text(text, None, "card text") if text else None
    text = fitted.drawn(text) if fitted and text else text
    if fitted and text:
        size = max(12, round(style.size * min(width, height) / 720))
        font = load_font(fitted.font, size)
        lines = "\n".join(wrap(text, font, width * 0.84)[:4])
        text_style = SubtitleStyle(color=style.color, stroke_color="#000000", box_color=None)
        pieces.append(draw_text_image(lines, font, text_style, max(1, size // 24), size // 4))
    gap = round(height * 0.03)
    y = (height - sum(p.height for p in pieces) - gap * (len(pieces) - 1)) // 2
    for piece in pieces:
        card.alpha_composite(piece, ((width - piece.width) // 2, y))
        y += piece.height + gap
    return card


def card_layers(spec, total: float) -> list[ImageClip]:
    from reelcrew.assemble.composition import image_layer

    cards, layers = spec.cards, []
    if cards.title and spec.title:
        seconds = min(cards.title_seconds, total)
        layers.append(image_layer(draw_card(spec.width, spec.height, spec.title, cards), 0, seconds, (0, 0)))
    if cards.end and (cards.channel or cards.logo):
        seconds = min(cards.end_seconds, total)
        layers.append(image_layer(draw_card(spec.width, spec.height, cards.channel, cards, cards.logo),
                                  total - seconds, seconds, (0, 0)))
    return layers
