"""The final cut: a moviepy composition, rendered by the streaming ffmpeg path whenever it can be.

`render_cut` builds the cut as moviepy objects (composition.py), hands it to the user's edit function if
one is configured, then compiles it (compiler.py). A composition of the node types reelcrew builds is
rendered by the fast path: each clip's stretch decoded by its own ffmpeg (with its xfade), raw frames
spliced into one x264 encoder that draws the Pillow-made layers; measured on this machine that path is
4-6x faster than compositing frame by frame in Python (docs/benchmarks.md). Anything else (a custom
effect, a frame function) is rendered by moviepy's own writer, with the clips' frames still coming from
the same ffmpeg segment decoders, so both paths show the same video. One log line says which path and why.
"""

from __future__ import annotations

import bisect
import logging
import os
import subprocess
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from reelcrew.assemble.captions import Cue
from reelcrew.assemble.compiler import (
    NotCompilable,
    Plan,
    Segment,
    audio_graph,
    audio_parts,
    compile_video,
    describe_path,
    own_audio_parts,
    plan_fades,
    segment_plan,
    write_overlays,
)
from reelcrew.assemble.composition import build_composition, incoming
from reelcrew.assemble.fonts import Font
from reelcrew.assemble.nodes import FrameReader, SourceClip, _fit_filter
from reelcrew.children import dies_with_parent
from reelcrew.errors import AssemblyError
from reelcrew.files import part_path
from reelcrew.leftovers import render_folder
from reelcrew.media import MediaError, MediaInfo, ffmpeg_exe, probe
from reelcrew.settings import CardStyle, MusicStyle, RenderStyle, SubtitleStyle, TransitionStyle, WatermarkStyle
from reelcrew.storage import FULL, StorageError, cause_of, folder_cause, free_bytes, storage_error

log = logging.getLogger("reelcrew.assemble")


class CutClip(BaseModel):
    path: Path
    caption: str = ""
    transition: str | None = None  # the transition into this clip; None: transitions.kind


class CutSpec(BaseModel):
    clips: list[CutClip]
    width: int = 1280
    height: int = 720
    subtitles: SubtitleStyle = SubtitleStyle()
    watermark: WatermarkStyle = WatermarkStyle()
    transitions: TransitionStyle = TransitionStyle()
    music: MusicStyle = MusicStyle()
    render: RenderStyle = RenderStyle()
    cards: CardStyle = CardStyle()
    title: str | None = None  # the title card's text (the SEO title)


@dataclass
class CutResult:
    duration: float
    cues: list[Cue]
    infos: list[MediaInfo]
    path: str = "fast"  # "fast" or "moviepy"
    reason: str | None = None  # why moviepy rendered it
    font: Font | None = None
    font_size: int = 0


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


def segment_command(seg: Segment, width: int, height: int, fps: int, pix_fmt: str = "yuv420p") -> list[str]:
    """Decode one segment (a clip with the transition into it, or black) to raw frames on stdout."""
    args = [ffmpeg_exe(), "-hide_banner", "-v", "error", "-nostdin", "-threads", "1"]
    out = ["-frames:v", str(seg.frames), "-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1"]
    if seg.node is None:
        return args + ["-f", "lavfi", "-i", f"color=c=black:s={width}x{height}:r={fps}"] + out
    node = seg.node
    fit = _fit_filter(node.info, width, height, fps, node.fit)
    args += (["-ss", f"{node.in_point:.4f}"] if node.in_point > 0 else []) + ["-i", str(node.path)]
    hold = "tpad=stop_mode=clone:stop=-1"  # a clip a frame short of its slot holds its last frame
    if seg.fade and seg.prev is not None:
        fade = f"{seg.fade:.4f}"
        fit_prev = _fit_filter(seg.prev.info, width, height, fps, seg.prev.fit)
        args += ["-threads", "1", "-ss", f"{seg.prev_at:.4f}", "-i", str(seg.prev.path)]
        graph = (f"[0:v]{fit},split[h][b];[1:v]{fit_prev},{hold},trim=duration={fade},setpts=PTS-STARTPTS[t];"
                 f"[h]trim=duration={fade},setpts=PTS-STARTPTS[h2];"
                 f"[t][h2]xfade=transition={seg.kind}:duration={fade}:offset=0[x];"
                 f"[b]trim=start={fade},setpts=PTS-STARTPTS[b2];"
                 f"[x][b2]concat=n=2:v=1:a=0,{hold}[out]")
    else:
        graph = f"[0:v]{fit},setpts=PTS-STARTPTS,{hold}[out]"
    return args + ["-filter_complex", graph, "-map", "[out]"] + out


def _encode_args(style: RenderStyle, total: float, output: Path) -> list[str]:
    return ["-c:v", "libx264", "-preset", style.preset, "-crf", str(style.crf), "-pix_fmt", "yuv420p",
            "-r", str(style.fps), "-c:a", "aac", "-b:a", "128k", "-ar", str(style.audio_rate),
            "-movflags", "+faststart", "-t", f"{total:.4f}", "-f", "mp4", str(output)]


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


def _stream_render(plan: Plan, soundtrack: Path, style: RenderStyle, output: Path, work: Path) -> None:
    """Segment by segment into one encoder: at most two decoders at a time, so memory stays flat.

    Each stretch is decoded to raw frames and piped into a single x264 encoder that also draws the
    overlays: exactly one encode. The next segment's decoder starts (and seeks) while this one streams.
    """
    graph: list[str] = []
    layer_args: list[str] = []
    video = "0:v"
    for k, overlay in enumerate(write_overlays(plan, work)):
        layer_args += overlay.args
        enable = ""
        if overlay.start > 1e-3 or overlay.end is not None:
            end = overlay.end if overlay.end is not None else plan.duration + 1
            enable = f":enable='between(t,{overlay.start:.4f},{end - 1e-4:.4f})'"
        graph.append(f"[{video}][{k + 2}:v]overlay=x={overlay.x}:y={overlay.y}:eof_action=repeat{enable}[ov{k}]")
        video = f"ov{k}"
    encoder = [ffmpeg_exe(), "-y", "-hide_banner", "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p",
               "-s", f"{plan.width}x{plan.height}", "-r", str(plan.fps), "-i", "pipe:0", "-i", str(soundtrack),
               *layer_args]
    encoder += (["-filter_complex", ";".join(graph), "-map", f"[{video}]"] if graph else ["-map", "0:v"])
    encoder += ["-map", "1:a", *_encode_args(style, plan.duration, output)]
    with open(work / "encoder.log", "w+") as enc_log:
        enc = subprocess.Popen(dies_with_parent(encoder), stdin=subprocess.PIPE, stderr=enc_log)
        assert enc.stdin is not None  # stdin=PIPE
        problem = None
        segs = plan.segments
        start = lambda i: subprocess.Popen(  # noqa: E731
            dies_with_parent(segment_command(segs[i], plan.width, plan.height, plan.fps)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        decoder = start(0) if segs else None
        try:
            for i in range(len(segs)):
                following = start(i + 1) if i + 1 < len(segs) else None
                # one decoder per segment, each started with stdout and stderr PIPEs
                assert decoder is not None and decoder.stdout is not None and decoder.stderr is not None
                _pipe_to_pipe(decoder.stdout, enc.stdin)
                if decoder.wait() != 0:
                    node = segs[i].node
                    name = node.path if node else "black"
                    problem = f"decoding {name} failed: {decoder.stderr.read().decode(errors='replace')[-400:]}"
                    if following:
                        following.kill()
                        following.wait()
                    break
                decoder = following
        except BrokenPipeError:
            problem = "the encoder stopped early"
        finally:
            if decoder and decoder.poll() is None:
                decoder.kill()
                decoder.wait()
            try:
                enc.stdin.close()
            except BrokenPipeError:
                pass
            if problem:
                enc.kill()
            enc.wait()
        enc_log.seek(0)
        if problem or enc.returncode != 0:
            said = enc_log.read().strip()[-800:]  # why the encoder stopped (a full disk says so here)
            problem = f"{problem}: {said}" if problem and said else (problem or said)
            raise AssemblyError(f"rendering {output.name} failed: {problem}",
                                "check the clips and settings named above; nothing was written")


class LinkedFrames:
    """The moviepy path's frames for SourceClips: the fast path's segment decoders, read in rgb24."""

    def __init__(self, segments: list[Segment], width: int, height: int, fps: int):
        self.segments, self.width, self.height, self.fps = segments, width, height, fps
        self.firsts = [s.first for s in segments]
        self.readers: dict[int, FrameReader] = {}
        self.black = np.zeros((height, width, 3), np.uint8)

    def frame(self, node: SourceClip, t: float) -> np.ndarray:
        index = round((node.start + t) * self.fps)
        k = max(0, bisect.bisect_right(self.firsts, index) - 1)
        seg = self.segments[k]
        if seg.node is None:
            return self.black
        for old in [j for j in self.readers if j < k]:  # moviepy renders in order: earlier stretches are done
            self.readers.pop(old).close()
        if k not in self.readers:
            self.readers[k] = FrameReader(segment_command(seg, self.width, self.height, self.fps, "rgb24"),
                                          self.width, self.height)
        return self.readers[k].get(min(index - seg.first, seg.frames - 1))

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()
        self.readers.clear()


def _source_nodes(comp: Any) -> list[SourceClip]:
    layers = list(getattr(comp, "clips", []) or [])
    if not getattr(comp, "created_bg", True):
        layers.insert(0, comp.bg)
    return [c for c in layers if isinstance(c, SourceClip) and c.is_pristine()]


def _moviepy_render(comp: Any, soundtrack: Path, style: RenderStyle, output: Path, work: Path) -> None:
    """moviepy's own writer; reelcrew's clips still decode through the fast path's segment commands."""
    sources = _source_nodes(comp)
    width, height = comp.size
    linked = None
    if sources:
        try:
            linked = LinkedFrames(segment_plan(sources, style.fps, comp.duration), width, height, style.fps)
        except NotCompilable:
            linked = None  # clips overlapping in ways a segment plan cannot express: each decodes on its own
        for node in sources:
            node.plan = linked
    try:
        comp.write_videofile(str(output), fps=style.fps, codec="libx264", preset=style.preset, audio=str(soundtrack),
                             audio_codec="aac", audio_bitrate="128k", audio_fps=style.audio_rate, threads=2,
                             ffmpeg_params=["-crf", str(style.crf), "-pix_fmt", "yuv420p", "-movflags", "+faststart",
                                            "-t", f"{comp.duration:.4f}", "-f", "mp4"],
                             logger=None, temp_audiofile_path=str(work))
    except Exception as exc:  # moviepy raises OSError with ffmpeg's log, or whatever a frame function raised
        log.error("moviepy render failed\n%s", traceback.format_exc())
        raise AssemblyError(f"rendering {output.name} with moviepy failed: {str(exc).strip().splitlines()[-1][:300]}",
                            "check the edit function's clips (the traceback is in the log); nothing was written"
                            ) from None
    finally:
        if linked is not None:
            linked.close()
        for node in sources:
            node.plan = None


def mix_soundtrack(comp: Any, style: RenderStyle, loudness: bool, work: Path) -> Path:
    """The whole soundtrack as one wav: ffmpeg mixes reelcrew's parts; moviepy writes anything else."""
    wav = work / "soundtrack.wav"
    duration = comp.duration
    try:
        parts = audio_parts(comp.audio)
    except NotCompilable as why:
        log.info("soundtrack mixed by moviepy: %s", why)
        plan_fades(own_audio_parts(comp.audio))  # the clips' sounds still cross-fade under their transitions
        raw = work / "soundtrack-moviepy.wav"
        comp.audio.write_audiofile(str(raw), fps=style.audio_rate, nbytes=2, codec="pcm_s16le", logger=None)
        args = ["-i", str(raw)]
        graph = f"[0:a]apad,atrim=duration={duration:.4f}" + (",loudnorm=I=-14:TP=-1.5:LRA=11" if loudness else "") + \
            f",aresample={style.audio_rate}[out]"
        out = "out"
    else:
        plan_fades(parts)
        args, graph, out = audio_graph(parts, duration, style.audio_rate, loudness)
    mixed = subprocess.run(dies_with_parent([ffmpeg_exe(), "-y", "-hide_banner", "-v", "error", "-nostdin", *args,
                                             "-filter_complex", graph, "-map", f"[{out}]", "-c:a", "pcm_f32le",
                                             "-t", f"{duration:.4f}", str(wav)]), capture_output=True, text=True)
    if mixed.returncode != 0:
        raise AssemblyError(f"mixing the soundtrack failed: {mixed.stderr.strip()[-600:]}",
                            "check the clips' audio and music.file; nothing was written")
    return wav


def apply_edit(edit: Callable, name: str, composition: Any, data: dict[str, Any]) -> Any:
    """Call the user's edit function; a failure is this production's failure, with the traceback in the log."""
    from moviepy import VideoClip

    try:
        result = edit(composition, data)
    except Exception as exc:
        log.error("edit function %s raised\n%s", name, traceback.format_exc())
        raise AssemblyError(f"the edit function {name} raised {type(exc).__name__}: {str(exc)[:200]}",
                            "fix the edit function (its traceback is in the log) or remove render.edit") from None
    if not isinstance(result, VideoClip) or result.duration is None:
        raise AssemblyError(f"the edit function {name} returned {type(result).__name__}, not a composition with a "
                            "duration", "return the composition (a CompositeVideoClip) from the edit function")
    return result


def render_cut(spec: CutSpec, output: Path, edit: Callable | None = None, data: dict[str, Any] | None = None,
               edit_name: str = "") -> CutResult:
    """Build, edit, compile and render; to a temporary name renamed when complete (a failure leaves no output)."""
    if not spec.clips:
        raise AssemblyError("nothing to assemble: no clips",
                            "generate the clips first (`reelcrew run ... --until clips`)")
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AssemblyError(f"cannot write to {output.parent}: {exc.strerror}",
                            "choose a writable output folder") from exc
    infos = _probe_all(spec.clips)
    for i, info in enumerate(infos):
        fades = incoming(spec, i)[1] + (incoming(spec, i + 1)[1] if i + 1 < len(infos) else 0.0)
        if fades and info.duration <= fades + 1e-3:
            raise AssemblyError(f"a transition of {spec.transitions.duration}s is too long for clips this short",
                                "shorten transitions.duration")
    built = build_composition(spec, infos)
    comp = built.composition
    if edit is not None:
        comp = apply_edit(edit, edit_name or getattr(edit, "__name__", "edit"), comp,
                          {**(data or {}), "cues": built.cues})
    reason = None
    try:
        plan = compile_video(comp)
    except NotCompilable as why:
        plan, reason = None, str(why)
    if reason is None and spec.render.engine == "moviepy":
        reason = "render.engine is moviepy"
    log.info("rendering %s on the %s", output.name, describe_path(reason))
    tmp = part_path(output, ".mp4")
    needs = _space_needed(spec, infos, comp.duration, output)
    try:
        with render_folder() as work_dir:
            work = Path(work_dir)
            soundtrack = mix_soundtrack(comp, spec.render, spec.music.normalize_loudness, work)
            if plan is not None and reason is None:
                _stream_render(plan, soundtrack, spec.render, tmp, work)
            else:
                _moviepy_render(comp, soundtrack, spec.render, tmp, work)
        os.replace(tmp, output)
    except (AssemblyError, OSError) as exc:
        storage = _storage_cause(exc, needs)  # before the partial file is deleted: its size is the evidence
        tmp.unlink(missing_ok=True)
        if storage is None:
            raise
        raise storage from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _close(comp)
    return CutResult(duration=comp.duration, cues=built.cues, infos=infos, path="fast" if reason is None else "moviepy",
                     reason=reason, font=built.font, font_size=built.font_size)


def _space_needed(spec: CutSpec, infos: list[MediaInfo], duration: float, output: Path) -> dict[Path, tuple]:
    """What a render writes where: the final (about as big as its clips) beside `output`, and the soundtrack
    (32-bit float stereo) with the overlays in the temp folder; each with the setting that moves it."""
    clips = sum(c.path.stat().st_size for c in spec.clips if c.path.exists())
    soundtrack = int(duration * spec.render.audio_rate * 2 * 4) + (8 << 20)
    return {output.parent: (clips, output.name, "--output-dir"),
            Path(tempfile.gettempdir()): (soundtrack, "the render's temp files", "TMPDIR")}


def _storage_cause(exc: BaseException, needs: dict[Path, tuple]) -> StorageError | None:
    """A render that failed for lack of room, a read-only folder or permissions, named with the folder it hit:
    the one ffmpeg's message names, else the one with less free space than the render needs there."""
    text = str(exc)
    cause = cause_of(exc)
    if cause is None:
        return None
    named = [folder for folder in needs if str(folder) in text]
    short = [folder for folder, (needed, _, _) in needs.items() if (free_bytes(folder) or 0) < needed]
    folder = (named or short or [folder for folder in needs if folder_cause(folder) == cause] or list(needs))[0]
    needed, what, elsewhere = needs[folder]
    return storage_error(cause, folder, what, needed if cause == FULL else None, elsewhere)


def _close(comp: Any) -> None:
    """Stop any reader a node opened (moviepy path); nodes never opened one on the fast path."""
    from reelcrew.assemble.compiler import _layers

    try:
        layers = _layers(comp) if hasattr(comp, "clips") else []
    except Exception:
        layers = []
    for layer in layers:
        if isinstance(layer, SourceClip):
            layer.close()
    audio = getattr(comp, "audio", None)
    for part in getattr(audio, "clips", []) or []:
        if hasattr(part, "close"):
            part.close()
