"""An edit function that puts a title card over the first seconds of the cut.

Use it with `render.edit: examples.title_card:add_title_card` in config/pipeline.yaml (from the project
folder), or `reelcrew assemble ... --edit examples.title_card:add_title_card`. It only adds an `ImageClip`
drawn by Pillow, so the cut still renders on the fast path.
"""

from __future__ import annotations

import numpy as np
from moviepy import ImageClip
from PIL import Image, ImageDraw, ImageFont

from reelcrew.assemble.composition import recompose
from reelcrew.assemble.fonts import find_font

SECONDS = 1.5


def add_title_card(composition, data):
    """The SEO title (or the script's title) in white on a dark band across the middle, for SECONDS."""
    seo, script = data.get("seo"), data.get("script")
    title = (seo.title if seo else None) or (script.title if script else None) or "reelcrew"
    width, height = composition.size
    font_file = find_font(title)
    font = ImageFont.truetype(font_file.path, round(height / 12), index=font_file.index)
    band = Image.new("RGBA", (width, round(height / 4)), (10, 10, 30, 230))
    draw = ImageDraw.Draw(band)
    draw.text((width / 2, band.height / 2), title, font=font, fill="white", anchor="mm")
    card = (ImageClip(np.asarray(band)).with_start(0).with_duration(min(SECONDS, composition.duration))
            .with_position(("center", "center")))
    return recompose(composition, [*composition.clips, card])
