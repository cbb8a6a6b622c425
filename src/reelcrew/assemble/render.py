"""The final cut as one composition of layers, rendered in a single ffmpeg pass.

The composition is moviepy's model: clips laid end to end (or crossfaded), image layers
(captions, watermark) with a start, an end, a position and an opacity, an audio mix. It is
compiled into one ffmpeg filtergraph instead of being composited frame by frame in Python:
measured on this machine, per-frame Python compositing costs 1.7-4x the time of the same
graph in ffmpeg (see ../shared/research/assembly-perf.md and docs/benchmarks.md). The layers
are drawn once with Pillow (fonts checked for coverage first), so no text reaches ffmpeg.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from pydantic import BaseModel

from reelcrew.assemble.captions import Cue, caption_position, chunk_cues, draw_text_image, load_font
from reelcrew.assemble.fonts import find_font
from reelcrew.errors import AssemblyError
from reelcrew.media import MediaError, MediaInfo, ffmpeg_exe, part_path, probe
from reelcrew.settings import MusicStyle, RenderStyle, SubtitleStyle, TransitionStyle, WatermarkStyle


class CutClip(BaseModel):
    path: Path
    caption: str = ""


class CutSpec(BaseModel):
    clips: list[CutClip]
    width: int = 1280
    height: int = 720
    subtitles: SubtitleStyle = SubtitleStyle()
    watermark: WatermarkStyle = WatermarkStyle()
    transitions: TransitionStyle = TransitionStyle()
    music: MusicStyle = MusicStyle()
    render: RenderStyle = RenderStyle()


@dataclass
class Layer:
    image: Path
    x: int
    y: int
    start: float | None = None  # None: the whole video
    end: float | None = None


@dataclass
class CutResult:
    duration: float
    cues: list[Cue]
    infos: list[MediaInfo]


def _probe_all(clips: list[CutClip]) -> list[MediaInfo]:
    infos = []
    for clip in clips:
        try:
            infos.append(probe(clip.path))
        except MediaError as exc:
            raise AssemblyError(f"clip {clip.path} cannot be decoded: {exc}",
                                "replace or regenerate that clip (`reelcrew retry PRODUCTION --clip N`)") from None
        if infos[-1].duration <= 0.1:
            raise AssemblyError(f"clip {clip.path} has no frames", "replace or regenerate that clip")
    return infos


def timeline(infos: list[MediaInfo], fade: float) -> list[tuple[float, float]]:
    """Where each clip sits in the cut, crossfades overlapping neighbours by `fade` seconds."""
    spans, t = [], 0.0
    for info in infos:
        spans.append((t, t + info.duration))
        t += info.duration - fade
    return spans


def _caption_layers(spec: CutSpec, spans: list[tuple[float, float]], fade: float, work: Path) -> tuple[list[Layer], list[Cue]]:
    texts = [c.caption.strip() for c in spec.clips]
    if not any(texts):
        return [], []
    style = spec.subtitles
    font = find_font("".join(texts), style.font)
    scale = min(spec.width, spec.height) / 720
    pil_font = load_font(font, max(12, round(style.size * scale)))
    stroke, pad = round(style.stroke_width * scale), round(style.size * scale * 0.3)
    layers, cues = [], []
    for i, (text, (start, end)) in enumerate(zip(texts, spans)):
        if not text:
            continue
        start += fade / 2 if i else 0.0  # captions change mid-transition, never overlap
        end -= fade / 2 if i < len(spans) - 1 else 0.0
        for cue in chunk_cues(text, start, end, pil_font, spec.width * style.max_width - 2 * pad, style.max_lines):
            image = draw_text_image(cue.text, pil_font, style, stroke, pad)
            path = work / f"cap{len(layers):03d}.png"
            image.save(path)
            x, y = caption_position(image, spec.width, spec.height, style)
            layers.append(Layer(path, x, y, cue.start, cue.end))
            cues.append(cue)
    return layers, cues


def _watermark_layer(spec: CutSpec, work: Path) -> Layer | None:
    wm = spec.watermark
    if wm.image:
        src = Path(wm.image).expanduser()
        if not src.exists():
            raise AssemblyError(f"watermark image {src} does not exist", "fix watermark.image in config/pipeline.yaml")
        logo = Image.open(src).convert("RGBA")
        width = max(8, int(spec.width * wm.scale))
        logo = logo.resize((width, max(1, logo.height * width // logo.width)), Image.LANCZOS)
        logo.putalpha(logo.getchannel("A").point(lambda a: int(a * wm.opacity)))
    elif wm.text:
        font = find_font(wm.text, None)
        size = max(12, round(28 * min(spec.width, spec.height) / 720))
        style = SubtitleStyle(color="#FFFFFF", stroke_color="#000000", box_color=None)
        logo = draw_text_image(wm.text, load_font(font, size), style, max(1, size // 14), 2, wm.opacity)
    else:
        return None
    path = work / "watermark.png"
    logo.save(path)
    m = wm.margin
    x = m if "left" in wm.corner else spec.width - logo.width - m
    y = m if "top" in wm.corner else spec.height - logo.height - m
    return Layer(path, x, y)


def build_command(spec: CutSpec, infos: list[MediaInfo], layers: list[Layer], output: Path) -> list[str]:
    W, H, fps, rate = spec.width, spec.height, spec.render.fps, spec.render.audio_rate
    fade = spec.transitions.duration if spec.transitions.kind == "crossfade" and len(infos) > 1 else 0.0
    args: list[str] = [ffmpeg_exe(), "-y", "-hide_banner", "-v", "error", "-nostdin"]
    for clip in spec.clips:
        args += ["-threads", "1", "-i", str(clip.path)]  # one decoder thread per clip: memory flat in the clip count
    graph: list[str] = []
    fit = (f"scale={W}:{H}:force_original_aspect_ratio=increase,crop={W}:{H}" if spec.render.fit == "cover" else
           f"scale={W}:{H}:force_original_aspect_ratio=decrease,pad={W}:{H}:(ow-iw)/2:(oh-ih)/2")
    for i, info in enumerate(infos):
        d = f"{info.duration:.4f}"
        graph.append(f"[{i}:v]{fit},setsar=1,fps={fps},format=yuv420p,trim=duration={d},setpts=PTS-STARTPTS[v{i}]")
        if info.has_audio:
            graph.append(f"[{i}:a]aresample={rate},aformat=sample_fmts=fltp:channel_layouts=stereo,"
                         f"apad,atrim=duration={d},asetpts=PTS-STARTPTS[a{i}]")
        else:
            graph.append(f"anullsrc=r={rate}:cl=stereo,atrim=duration={d},aformat=sample_fmts=fltp[a{i}]")
    n = len(infos)
    if fade and n > 1:
        v, a, offset = "v0", "a0", 0.0
        for i in range(1, n):
            offset += infos[i - 1].duration - fade
            graph.append(f"[{v}][v{i}]xfade=transition=fade:duration={fade}:offset={offset:.4f}[vx{i}]")
            graph.append(f"[{a}][a{i}]acrossfade=d={fade}:c1=tri:c2=tri[ax{i}]")
            v, a = f"vx{i}", f"ax{i}"
    else:
        graph.append("".join(f"[v{i}][a{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=1[vx][ax]")
        v, a = "vx", "ax"
    total = sum(info.duration for info in infos) - fade * (n - 1)
    next_input = n
    for k, layer in enumerate(layers):
        args += ["-i", str(layer.image)]
        enable = f":enable='between(t,{layer.start:.3f},{layer.end:.3f})'" if layer.start is not None else ""
        graph.append(f"[{v}][{next_input}:v]overlay=x={layer.x}:y={layer.y}:eof_action=repeat{enable}[ov{k}]")
        v, next_input = f"ov{k}", next_input + 1
    music = spec.music
    if music.file:
        src = Path(music.file).expanduser()
        if not src.exists():
            raise AssemblyError(f"music file {src} does not exist", "fix music.file in config/pipeline.yaml")
        args += ["-stream_loop", "-1", "-i", str(src)]
        fade_out = max(0.0, total - music.fade)
        graph.append(f"[{next_input}:a]aresample={rate},aformat=sample_fmts=fltp:channel_layouts=stereo,"
                     f"atrim=duration={total:.4f},afade=t=in:d={music.fade},afade=t=out:st={fade_out:.3f}:d={music.fade},"
                     f"volume={music.volume}[mus]")
        graph.append(f"[{a}][mus]amix=inputs=2:duration=first:normalize=0[mix]")
        a = "mix"
    if music.normalize_loudness:
        graph.append(f"[{a}]loudnorm=I=-14:TP=-1.5:LRA=11,aresample={rate}[loud]")
        a = "loud"
    args += ["-filter_complex", ";".join(graph), "-map", f"[{v}]", "-map", f"[{a}]",
             "-c:v", "libx264", "-preset", spec.render.preset, "-crf", str(spec.render.crf), "-pix_fmt", "yuv420p",
             "-r", str(fps), "-c:a", "aac", "-b:a", "128k", "-ar", str(rate), "-movflags", "+faststart",
             "-t", f"{total:.4f}", "-f", "mp4", str(output)]
    return args


def render_cut(spec: CutSpec, output: Path) -> CutResult:
    """Render to a temporary name and rename when complete: a failed render leaves no output."""
    if not spec.clips:
        raise AssemblyError("nothing to assemble: no clips", "generate the clips first (`reelcrew run ... --until clips`)")
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AssemblyError(f"cannot write to {output.parent}: {exc.strerror}", "choose a writable output folder") from exc
    infos = _probe_all(spec.clips)
    fade = spec.transitions.duration if spec.transitions.kind == "crossfade" and len(infos) > 1 else 0.0
    if fade and min(i.duration for i in infos) <= 2 * fade:
        raise AssemblyError(f"crossfade of {fade}s is too long for clips this short", "shorten transitions.duration")
    spans = timeline(infos, fade)
    tmp = part_path(output, ".mp4")
    with tempfile.TemporaryDirectory(prefix="reelcrew-cut-") as work_dir:
        work = Path(work_dir)
        layers, cues = _caption_layers(spec, spans, fade, work)
        mark = _watermark_layer(spec, work)
        if mark:
            layers.append(mark)
        cmd = build_command(spec, infos, layers, tmp)
        result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise AssemblyError(f"rendering {output.name} failed: {result.stderr.strip()[-800:]}",
                            "check the clips and settings named above; nothing was written")
    os.replace(tmp, output)
    return CutResult(duration=spans[-1][1], cues=cues, infos=infos)
