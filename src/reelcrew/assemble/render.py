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
from reelcrew.files import part_path
from reelcrew.media import MediaError, MediaInfo, ffmpeg_exe, probe
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


def _fit(spec: CutSpec, info: MediaInfo) -> str:
    """Scale to the target (cover crops, contain pads), square pixels, target fps, yuv420p; no-ops skipped."""
    W, H = spec.width, spec.height
    steps = []
    if (info.width, info.height) != (W, H):
        steps.append(f"scale={W}:{H}:force_original_aspect_ratio=increase,crop={W}:{H}" if spec.render.fit == "cover"
                     else f"scale={W}:{H}:force_original_aspect_ratio=decrease,pad={W}:{H}:(ow-iw)/2:(oh-ih)/2")
    steps.append("setsar=1")
    if abs(info.fps - spec.render.fps) > 0.01:
        steps.append(f"fps={spec.render.fps}")
    steps.append("format=yuv420p")
    return ",".join(steps)


def _fade(spec: CutSpec, n: int) -> float:
    return spec.transitions.duration if spec.transitions.kind == "crossfade" and n > 1 else 0.0


def _audio_graph(spec: CutSpec, infos: list[MediaInfo], first_input: int) -> tuple[list[str], int, list[str], str]:
    """Input args, their count, filter chains and output label of the soundtrack (clips' audio, fades, music)."""
    rate, n, fade = spec.render.audio_rate, len(infos), _fade(spec, len(infos))
    args: list[str] = []
    graph: list[str] = []
    inputs = 0
    for i, info in enumerate(infos):
        d = f"{info.duration:.4f}"
        if info.has_audio:
            args += ["-vn", "-i", str(spec.clips[i].path)]
            inputs += 1
            graph.append(f"[{first_input + inputs - 1}:a]aresample={rate},"
                         f"aformat=sample_fmts=fltp:channel_layouts=stereo,apad,atrim=duration={d},"
                         f"asetpts=PTS-STARTPTS[a{i}]")
        else:  # a clip with no sound gets silence of its length
            graph.append(f"anullsrc=r={rate}:cl=stereo,atrim=duration={d},aformat=sample_fmts=fltp[a{i}]")
    if fade:
        a = "a0"
        for i in range(1, n):
            graph.append(f"[{a}][a{i}]acrossfade=d={fade}:c1=tri:c2=tri[ax{i}]")
            a = f"ax{i}"
    else:
        graph.append("".join(f"[a{i}]" for i in range(n)) + f"concat=n={n}:v=0:a=1[ax]")
        a = "ax"
    total = sum(info.duration for info in infos) - fade * (n - 1)
    music = spec.music
    if music.file:
        src = Path(music.file).expanduser()
        if not src.exists():
            raise AssemblyError(f"music file {src} does not exist", "fix music.file in config/pipeline.yaml")
        args += ["-stream_loop", "-1", "-i", str(src)]
        inputs += 1
        fade_out = max(0.0, total - music.fade)
        graph.append(f"[{first_input + inputs - 1}:a]aresample={rate},"
                     f"aformat=sample_fmts=fltp:channel_layouts=stereo,atrim=duration={total:.4f},"
                     f"afade=t=in:d={music.fade},afade=t=out:st={fade_out:.3f}:d={music.fade},volume={music.volume}[mus]")
        graph.append(f"[{a}][mus]amix=inputs=2:duration=first:normalize=0[mix]")
        a = "mix"
    if music.normalize_loudness:
        graph.append(f"[{a}]loudnorm=I=-14:TP=-1.5:LRA=11,aresample={rate}[loud]")
        a = "loud"
    return args, inputs, graph, a


def _overlays(graph: list[str], video: str, layers: list[Layer], first_input: int) -> tuple[list[str], str]:
    args: list[str] = []
    for k, layer in enumerate(layers):
        args += ["-i", str(layer.image)]
        enable = f":enable='between(t,{layer.start:.3f},{layer.end:.3f})'" if layer.start is not None else ""
        graph.append(f"[{video}][{first_input + k}:v]overlay=x={layer.x}:y={layer.y}:eof_action=repeat{enable}[ov{k}]")
        video = f"ov{k}"
    return args, video


def _encode_args(spec: CutSpec, total: float, output: Path) -> list[str]:
    return ["-c:v", "libx264", "-preset", spec.render.preset, "-crf", str(spec.render.crf), "-pix_fmt", "yuv420p",
            "-r", str(spec.render.fps), "-c:a", "aac", "-b:a", "128k", "-ar", str(spec.render.audio_rate),
            "-movflags", "+faststart", "-t", f"{total:.4f}", "-f", "mp4", str(output)]


def segments(infos: list[MediaInfo], fade: float, fps: int) -> list[tuple[int, int]]:
    """(first frame, frame count) of each clip's stretch of the cut; a crossfade belongs to the later clip."""
    starts = [0.0]
    for i in range(1, len(infos)):
        starts.append(starts[-1] + infos[i - 1].duration - fade)
    ends = starts[1:] + [starts[-1] + infos[-1].duration]
    return [(round(a * fps), round(b * fps) - round(a * fps)) for a, b in zip(starts, ends)]


def segment_command(spec: CutSpec, infos: list[MediaInfo], i: int, frames: int) -> list[str]:
    """Decode clip i (and, under a crossfade, the previous clip's tail) to raw frames on stdout."""
    fade, n = _fade(spec, len(infos)), len(infos)
    fit, fit_prev = _fit(spec, infos[i]), _fit(spec, infos[i - 1])
    args = [ffmpeg_exe(), "-hide_banner", "-v", "error", "-nostdin", "-threads", "1", "-i", str(spec.clips[i].path)]
    body_end = infos[i].duration - (fade if i < n - 1 else 0.0)
    if fade and i > 0:
        args += ["-threads", "1", "-ss", f"{infos[i - 1].duration - fade:.4f}", "-i", str(spec.clips[i - 1].path)]
        graph = (f"[0:v]{fit},split[h][b];[1:v]{fit_prev},trim=duration={fade},setpts=PTS-STARTPTS[t];"
                 f"[h]trim=duration={fade},setpts=PTS-STARTPTS[h2];"
                 f"[t][h2]xfade=transition=fade:duration={fade}:offset=0[x];"
                 f"[b]trim=start={fade}:end={body_end:.4f},setpts=PTS-STARTPTS[b2];"
                 f"[x][b2]concat=n=2:v=1:a=0,tpad=stop_mode=clone:stop_duration=1[out]")
    else:
        graph = f"[0:v]{fit},trim=end={body_end:.4f},setpts=PTS-STARTPTS,tpad=stop_mode=clone:stop_duration=1[out]"
    return args + ["-filter_complex", graph, "-map", "[out]", "-frames:v", str(frames),
                   "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1"]


def single_pass_command(spec: CutSpec, infos: list[MediaInfo], layers: list[Layer], output: Path) -> list[str]:
    """The same cut as one ffmpeg command with every clip open at once: the benchmark's baseline.

    Fast, but an xfade chain buffers the later clips' frames, so its memory grows with the clip
    count (2.5 GB for 24 clips here); `render_cut` streams clip by clip instead.
    """
    fade, n = _fade(spec, len(infos)), len(infos)
    args = [ffmpeg_exe(), "-y", "-hide_banner", "-v", "error", "-nostdin"]
    graph: list[str] = []
    for i, info in enumerate(infos):
        args += ["-threads", "1", "-i", str(spec.clips[i].path)]
        graph.append(f"[{i}:v]{_fit(spec, info)},trim=duration={info.duration:.4f},setpts=PTS-STARTPTS[v{i}]")
    v, offset = "v0", 0.0
    for i in range(1, n):
        if fade:
            offset += infos[i - 1].duration - fade
            graph.append(f"[{v}][v{i}]xfade=transition=fade:duration={fade}:offset={offset:.4f}[vx{i}]")
            v = f"vx{i}"
    if not fade:
        graph.append("".join(f"[v{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=0[vx]")
        v = "vx"
    audio_args, audio_inputs, audio_graph, a = _audio_graph(spec, infos, n)
    layer_args, v = _overlays(graph, v, layers, n + audio_inputs)
    total = sum(info.duration for info in infos) - fade * (n - 1)
    return (args + audio_args + layer_args + ["-filter_complex", ";".join(graph + audio_graph), "-map", f"[{v}]",
                                              "-map", f"[{a}]"] + _encode_args(spec, total, output))


def _pipe_to_pipe(src, dst) -> None:
    """Move raw frames between the two ffmpeg processes; splice(2) keeps them out of Python's memory."""
    src_fd, dst_fd = src.fileno(), dst.fileno()
    splice = getattr(os, "splice", None)
    while True:
        if splice is not None:
            try:
                moved = splice(src_fd, dst_fd, 1 << 20)
            except OSError:
                splice = None
                continue
            if moved == 0:
                return
        else:
            chunk = os.read(src_fd, 1 << 20)
            if not chunk:
                return
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst_fd, view):]


def _stream_render(spec: CutSpec, infos: list[MediaInfo], layers: list[Layer], output: Path, work: Path) -> None:
    """Clip by clip into one encoder: at most two clips are decoded at a time, so memory stays flat.

    The soundtrack is mixed first (audio is cheap), then each clip's stretch is decoded to raw frames
    and piped into a single x264 encoder that also draws the overlays: still exactly one encode.
    """
    fade, fps, n = _fade(spec, len(infos)), spec.render.fps, len(infos)
    total = sum(info.duration for info in infos) - fade * (n - 1)
    audio_args, _, audio_graph, a = _audio_graph(spec, infos, 0)
    soundtrack = work / "soundtrack.wav"
    mixed = subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-v", "error", "-nostdin", *audio_args,
                            "-filter_complex", ";".join(audio_graph), "-map", f"[{a}]", "-c:a", "pcm_f32le",
                            "-t", f"{total:.4f}", str(soundtrack)], capture_output=True, text=True)
    if mixed.returncode != 0:
        raise AssemblyError(f"mixing the soundtrack failed: {mixed.stderr.strip()[-600:]}",
                            "check the clips' audio and music.file; nothing was written")
    graph: list[str] = []
    layer_args, v = _overlays(graph, "0:v", layers, 2)
    encoder = [ffmpeg_exe(), "-y", "-hide_banner", "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p",
               "-s", f"{spec.width}x{spec.height}", "-r", str(fps), "-i", "pipe:0", "-i", str(soundtrack), *layer_args]
    encoder += (["-filter_complex", ";".join(graph), "-map", f"[{v}]"] if graph else ["-map", "0:v"])
    encoder += ["-map", "1:a", *_encode_args(spec, total, output)]
    with open(work / "encoder.log", "w+") as log:
        enc = subprocess.Popen(encoder, stdin=subprocess.PIPE, stderr=log)
        problem = None
        plan = segments(infos, fade, fps)
        start = lambda i: subprocess.Popen(segment_command(spec, infos, i, plan[i][1]),  # noqa: E731
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        decoder = start(0)
        try:
            for i in range(len(plan)):
                # the next clip's decoder starts (and seeks) while this one streams: no gap for the encoder
                following = start(i + 1) if i + 1 < len(plan) else None
                _pipe_to_pipe(decoder.stdout, enc.stdin)
                if decoder.wait() != 0:
                    problem = f"decoding {spec.clips[i].path} failed: {decoder.stderr.read().decode(errors='replace')[-400:]}"
                    if following:
                        following.kill()
                    break
                decoder = following
        except BrokenPipeError:
            problem = "the encoder stopped early"
        finally:
            for proc in (decoder,):
                if proc and proc.poll() is None:
                    proc.kill()
            try:
                enc.stdin.close()
            except BrokenPipeError:
                pass
            if problem:
                enc.kill()
            enc.wait()
        log.seek(0)
        if problem or enc.returncode != 0:
            raise AssemblyError(f"rendering {output.name} failed: {problem or log.read().strip()[-800:]}",
                                "check the clips and settings named above; nothing was written")


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
    fade = _fade(spec, len(infos))
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
        try:
            _stream_render(spec, infos, layers, tmp, work)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, output)
    return CutResult(duration=spans[-1][1], cues=cues, infos=infos)
