"""The final cut: normalise, concatenate or crossfade, captions, watermark, audio; plus srt, thumbnail, metadata."""

from reelcrew.assemble.production import assemble_production
from reelcrew.assemble.render import CutClip, CutResult, CutSpec, render_cut

__all__ = ["CutClip", "CutSpec", "CutResult", "render_cut", "assemble_production"]
