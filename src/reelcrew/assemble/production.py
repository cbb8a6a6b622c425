"""Everything that lands beside the cut: final.mp4, final.srt, thumbnail.jpg, metadata.json."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image

from reelcrew.assemble.ass import write_ass
from reelcrew.assemble.captions import draw_text_image, load_font, wrap, write_srt
from reelcrew.assemble.chapters import ScenePlace, cut_chapters
from reelcrew.assemble.composition import incoming, spans
from reelcrew.assemble.fonts import fit_text
from reelcrew.assemble.hooks import load_edit
from reelcrew.assemble.render import CutClip, CutResult, CutSpec, render_cut
from reelcrew.files import part_path, write_json_atomic
from reelcrew.models import Production, Script, SeoPackage
from reelcrew.settings import Settings, SubtitleStyle


def spec_from_settings(settings: Settings, clips: list[CutClip], width: int, height: int,
                       title: str | None = None) -> CutSpec:
    return CutSpec(clips=clips, width=width, height=height, subtitles=settings.subtitles, watermark=settings.watermark,
                   transitions=settings.transitions, music=settings.music, render=settings.render,
                   cards=settings.cards, title=title)


def write_sidecars(result: CutResult, spec: CutSpec, video: Path) -> None:
    """final.srt and final.ass beside the video, from the cues that were burned in."""
    write_srt(result.cues, video.with_suffix(".srt"))
    write_ass(result.cues, video.with_suffix(".ass"), spec.subtitles, result.font, result.font_size,
              spec.width, spec.height)


def render_with_edit(spec: CutSpec, final: Path, settings: Settings, data: dict[str, Any]) -> CutResult:
    """Render the cut, through the user's edit function when render.edit names one."""
    edit = load_edit(settings.render.edit)
    return render_cut(spec, final, edit, {**data, "settings": settings}, settings.render.edit or "")


def make_thumbnail(clips: list[CutClip], result: CutResult, dest: Path, width: int, height: int,
                   title: str | None) -> None:
    """A frame from the strongest scene (the most detail per second), with the title on top if given."""
    from moviepy import VideoFileClip

    sizes = [Path(c.path).stat().st_size / max(info.duration, 0.1) for c, info in zip(clips, result.infos, strict=True)]
    best = max(range(len(clips)), key=sizes.__getitem__)
    with VideoFileClip(str(clips[best].path), audio=False) as video:
        frame = video.get_frame(video.duration / 2)
    image = Image.fromarray(frame).convert("RGB")
    scale = max(width / image.width, height / image.height)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    image = image.crop((left, top, left + width, top + height))
    fitted = fit_text(title, None, "thumbnail title") if title else None
    title = fitted.drawn(title) if fitted and title else title
    if fitted and title:
        size = round(64 * min(width, height) / 720)
        font = load_font(fitted.font, size)
        text = "\n".join(wrap(title, font, width * 0.9)[:3])
        card = draw_text_image(text, font, SubtitleStyle(box_color="#00000099", stroke_width=3), 3, size // 3)
        image.paste(card, ((width - card.width) // 2, round(height * 0.08)), card)
    tmp = part_path(dest)
    image.save(tmp, "JPEG", quality=90)
    os.replace(tmp, dest)


def scene_places(spec: CutSpec, result: CutResult, scenes: list[int]) -> list[ScenePlace]:
    """Where each scene of the cut is: from mid-way through its incoming transition (where its caption
    starts) to its end, clamped to the rendered duration."""
    out = []
    for i, (scene, (start, end)) in enumerate(zip(scenes, spans(spec, result.infos), strict=True)):
        start += incoming(spec, i)[1] / 2
        out.append(ScenePlace(scene, round(min(start, result.duration), 3), round(min(end, result.duration), 3)))
    return out


def assemble_production(folder: Path, clips: list[CutClip], settings: Settings, width: int, height: int,
                        seo: SeoPackage | None, facts: dict[str, Any], script: Script | None = None,
                        production: Production | None = None, scenes: list[int] | None = None) -> dict[str, Any]:
    """The final and everything beside it. `scenes` are the script's scene numbers of `clips` (default 1..n):
    the chapters in metadata.json are re-timed to where those scenes are in this cut (missing ones dropped)."""
    spec = spec_from_settings(settings, clips, width, height, seo.title if seo else None)
    final = folder / "final.mp4"
    result = render_with_edit(spec, final, settings, {"script": script, "seo": seo, "production": production})
    write_sidecars(result, spec, final)
    title = seo.title if seo and settings.render.thumbnail_title else None
    make_thumbnail(clips, result, folder / "thumbnail.jpg", width, height, title)
    places = scene_places(spec, result, scenes or list(range(1, len(clips) + 1)))
    seo_out = None
    if seo:  # the writers' plan stays in seo.json; metadata.json describes this cut
        chapters = cut_chapters(seo.chapters, script, places, result.duration)
        seo_out = {**seo.model_dump(mode="json"), "chapters": [c.model_dump(mode="json") for c in chapters]}
    metadata = {"seo": seo_out,
                "video": {"file": "final.mp4", "duration": round(result.duration, 3), "width": width, "height": height,
                          "clips": len(clips), "subtitles": "final.srt", "styled_subtitles": "final.ass",
                          "thumbnail": "thumbnail.jpg", "render_path": result.path,
                          "scenes": [{"scene": p.scene, "start": p.start, "end": p.end} for p in places]},
                **facts}
    write_json_atomic(folder / "metadata.json", metadata)
    return {"final": str(final), "duration": result.duration, "cues": len(result.cues), "path": result.path}
