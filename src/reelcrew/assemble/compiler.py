"""Reads a moviepy composition back as an ffmpeg plan, or says why it cannot.

The fast path understands the node types reelcrew builds: SourceClips (in any order, retimed,
trimmed with `subclipped`, added or removed) become segments decoded one after another with their
xfade; static `ImageClip`s (any size, a fixed position, a start and a duration, an opacity) become
overlays; SourceAudio and MusicBed become the soundtrack's ffmpeg graph. Anything else (a frame
function, an effect, a moving position, a nested composite) is a reason to let moviepy render.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
from moviepy import CompositeAudioClip, CompositeVideoClip, ImageClip
from moviepy.tools import compute_position

from reelcrew.assemble.nodes import MusicBed, SourceAudio, SourceClip
from reelcrew.assemble.transitions import lookup

EPS = 1e-3
_CONSTANT_POSITIONS = {"VideoClip.__init__.<locals>.<lambda>", "VideoClip.with_position.<locals>.<lambda>"}
_STATIC_IMAGES = {"ImageClip.__init__.<locals>.<lambda>", "ImageClip.image_transform.<locals>.<lambda>"}


class NotCompilable(Exception):
    """The composition holds something only moviepy can render; the message says what."""


@dataclass
class Segment:
    """A stretch of the cut decoded by one ffmpeg process: a clip (with the transition into it) or black."""

    first: int  # first frame on the cut
    frames: int
    node: SourceClip | None = None
    prev: SourceClip | None = None  # the clip it transitions in from
    fade: float = 0.0
    kind: str = "fade"
    prev_at: float = 0.0  # where in prev's file the transition starts


@dataclass
class Overlay:
    rgba: np.ndarray
    x: int
    y: int
    start: float
    end: float | None  # None: to the end


@dataclass
class Plan:
    width: int
    height: int
    fps: int
    duration: float
    segments: list[Segment]
    overlays: list[Overlay] = field(default_factory=list)


def _layers(comp: CompositeVideoClip) -> list:
    return ([] if getattr(comp, "created_bg", True) else [comp.bg]) + list(comp.clips)


def _constant_position(clip) -> bool:
    return getattr(clip.pos, "__qualname__", "") in _CONSTANT_POSITIONS


def _static_image(clip) -> bool:
    if not isinstance(clip, ImageClip) or getattr(clip.frame_function, "__qualname__", "") not in _STATIC_IMAGES:
        return False
    mask = clip.mask
    return mask is None or (isinstance(mask, ImageClip) and
                            getattr(mask.frame_function, "__qualname__", "") in _STATIC_IMAGES)


def _describe(clip) -> str:
    what = type(clip).__name__
    if isinstance(clip, SourceClip):
        return f"clip {clip.path.name} (transformed by moviepy)"
    fn = getattr(clip, "frame_function", None)
    name = getattr(fn, "__qualname__", "")
    return f"a {what}" + (f" with frame function {name}" if name and "ImageClip" not in name else "")


def segment_plan(sources: list[SourceClip], fps: int, duration: float) -> list[Segment]:
    """The clips as consecutive segments: a transition belongs to the later clip, gaps are black."""
    ordered = sorted(sources, key=lambda s: s.start)
    segments: list[Segment] = []
    cursor = 0.0  # end of what is covered so far
    prev: SourceClip | None = None
    for node in ordered:
        if node.duration is None or node.duration <= EPS:
            continue
        fade = 0.0
        if prev is not None:
            overlap = prev.end - node.start
            if node.start < prev.start + EPS or overlap > node.duration - EPS:
                raise NotCompilable(f"clip {node.path.name} starts inside or before clip {prev.path.name}")
            if overlap > EPS and node.transition and lookup(node.transition):
                fade = overlap
        if node.start > cursor + EPS:
            segments.append(Segment(round(cursor * fps), 0))
        xfade, offset = "fade", 0.0
        if fade:
            transition = lookup(node.transition)
            assert prev is not None and transition is not None  # a fade is set only after both were found
            xfade, offset = transition.xfade, prev.in_point + node.start - prev.start
        segments.append(Segment(round(node.start * fps), 0, node, prev if fade else None, fade, xfade, offset))
        cursor, prev = max(cursor, node.end), node
    if duration > cursor + EPS:
        segments.append(Segment(round(cursor * fps), 0))
    last = round(duration * fps)
    for seg, nxt in zip(segments, segments[1:] + [None], strict=True):
        seg.frames = (nxt.first if nxt else last) - seg.first
    return [s for s in segments if s.frames > 0]


def compile_video(comp) -> Plan:
    """The fast plan of a composition; NotCompilable names the first thing only moviepy can draw."""
    if not isinstance(comp, CompositeVideoClip) or \
            getattr(comp.frame_function, "__func__", None) is not CompositeVideoClip.frame_function:
        raise NotCompilable(f"the edit returned a {type(comp).__name__} that is not a plain CompositeVideoClip")
    if comp.duration is None:
        raise NotCompilable("the composition has no duration")
    width, height = comp.size
    fps = round(comp.fps or 24)
    sources, overlays, below, source_z = [], [], [], []
    for z, clip in enumerate(_layers(comp)):
        if isinstance(clip, SourceClip) and clip.is_pristine():
            if tuple(clip.size) != (width, height) or not _constant_position(clip) or \
                    compute_position(clip.size, comp.size, clip.pos(0), clip.relative_pos) != (0, 0):
                raise NotCompilable(f"clip {clip.path.name} is resized or moved")
            sources.append(clip)
            source_z.append((z, clip))
        elif _static_image(clip) and _constant_position(clip):
            below.append((z, clip))
            rgb = np.asarray(clip.img)
            alpha = np.full(rgb.shape[:2], 255, np.uint8) if clip.mask is None else \
                np.rint(np.asarray(clip.mask.img) * 255).clip(0, 255).astype(np.uint8)
            x, y = compute_position(clip.size, comp.size, clip.pos(0), clip.relative_pos)
            end = None if clip.end is None or clip.end >= comp.duration - EPS else clip.end
            overlays.append(Overlay(np.dstack([rgb[..., :3].astype(np.uint8), alpha]), x, y, clip.start, end))
        else:
            raise NotCompilable(f"{_describe(clip)} is not a layer type the fast path compiles")
    for z, image in below:
        end = image.end if image.end is not None else comp.duration
        if any(sz > z and src.start < end - EPS and src.end > image.start + EPS for sz, src in source_z):
            raise NotCompilable("an image layer sits below a clip that covers it")
    by_start = sorted(source_z, key=lambda zs: zs[1].start)  # (never `==` on clips: moviepy compares every frame)
    for (z_earlier, earlier), (z_later, later) in pairwise(by_start):
        if later.start < earlier.end - EPS and z_later < z_earlier:
            raise NotCompilable(f"clip {later.path.name} is drawn below the clip it overlaps")
    return Plan(width, height, fps, comp.duration, segment_plan(sources, fps, comp.duration), overlays)


@dataclass
class AudioPart:
    node: SourceAudio | MusicBed
    start: float


def audio_parts(audio, offset: float = 0.0) -> list[AudioPart]:
    """The soundtrack's parts on the cut's timeline; NotCompilable if one is not ours."""
    if audio is None:
        return []
    if isinstance(audio, CompositeAudioClip) and \
            getattr(audio.frame_function, "__func__", None) is CompositeAudioClip.frame_function:
        parts = []
        for clip in audio.clips:
            parts += audio_parts(clip, offset + audio.start)
        return parts
    if isinstance(audio, (SourceAudio, MusicBed)) and audio.is_pristine():
        return [AudioPart(audio, offset + audio.start)]
    raise NotCompilable(f"the soundtrack holds a {type(audio).__name__} that is not one reelcrew mixes")


def own_audio_parts(audio, offset: float = 0.0) -> list[AudioPart]:
    """reelcrew's own parts of a soundtrack that also holds others (their fades still apply)."""
    if isinstance(audio, CompositeAudioClip):
        return [part for clip in audio.clips for part in own_audio_parts(clip, offset + audio.start)]
    if isinstance(audio, (SourceAudio, MusicBed)):
        return [AudioPart(audio, offset + audio.start)]
    return []


def plan_fades(parts: list[AudioPart]) -> None:
    """A clip's sound fades over the overlap with its neighbours, with its transition's curves."""
    sounds = sorted((p for p in parts if isinstance(p.node, SourceAudio)), key=lambda p: p.start)
    for part in sounds:
        part.node.fade_in = part.node.fade_out = (0.0, "tri")
    for a, b in pairwise(sounds):
        overlap = a.start + a.node.duration - b.start
        if overlap > EPS:
            curves = lookup(b.node.transition) if b.node.transition else None
            out_curve, in_curve = (curves.out_curve, curves.in_curve) if curves else ("nofade", "nofade")
            a.node.fade_out = (min(overlap, a.node.duration), out_curve)
            b.node.fade_in = (min(overlap, b.node.duration), in_curve)


def audio_graph(parts: list[AudioPart], duration: float, rate: int, loudness: bool) -> tuple[list[str], str, str]:
    """ffmpeg input args, filtergraph and output label of the mixed soundtrack."""
    args: list[str] = []
    graph: list[str] = []
    labels: list[str] = []
    fmt = f"aresample={rate},aformat=sample_fmts=fltp:channel_layouts=stereo"
    for k, part in enumerate(parts):
        node = part.node
        delay = f",adelay={round(part.start * 1000)}:all=1" if part.start > EPS else ""
        if isinstance(node, MusicBed):
            args += ["-stream_loop", "-1", "-i", str(node.path)]
            fade_out = max(0.0, node.duration - node.fade)
            fades = (f",afade=t=in:d={node.fade},afade=t=out:st={fade_out:.3f}:d={node.fade}" if node.fade else "")
            graph.append(f"[{k}:a]{fmt},atrim=duration={node.duration:.4f}{fades},volume={node.volume}{delay}[p{k}]")
        else:
            args += (["-ss", f"{node.in_point:.4f}"] if node.in_point > 0 else []) + ["-vn", "-i", str(node.path)]
            fades = ""
            if node.fade_in[0] and node.fade_in[1] != "nofade":
                fades += f",afade=t=in:d={node.fade_in[0]:.4f}:curve={node.fade_in[1]}"
            if node.fade_out[0]:
                st = node.duration - node.fade_out[0]
                fades += (f",afade=t=out:st={st:.4f}:d={node.fade_out[0]:.4f}:curve={node.fade_out[1]}"
                          if node.fade_out[1] != "nofade" else f",atrim=duration={st:.4f}")
            graph.append(f"[{k}:a]{fmt},apad,atrim=duration={node.duration:.4f},asetpts=PTS-STARTPTS"
                         f"{fades}{delay}[p{k}]")
        labels.append(f"[p{k}]")
    silence = f"anullsrc=r={rate}:cl=stereo,atrim=duration={duration:.4f},aformat=sample_fmts=fltp[sil]"
    graph.append(silence)
    labels.append("[sil]")  # the mix lasts the whole cut even where nothing sounds
    graph.append("".join(labels) + f"amix=inputs={len(labels)}:normalize=0:duration=longest,"
                 f"atrim=duration={duration:.4f}[mix]")
    out = "mix"
    if loudness:
        graph.append(f"[{out}]loudnorm=I=-14:TP=-1.5:LRA=11,aresample={rate}[loud]")
        out = "loud"
    return args, ";".join(graph), out


def describe_path(reason: str | None) -> str:
    return "fast path (streaming ffmpeg)" if reason is None else f"moviepy path: {reason}"


@dataclass
class OverlayInput:
    """One ffmpeg input drawn by one overlay filter: a still image, or a track of images shown in turn."""

    args: list[str]
    x: int
    y: int
    start: float
    end: float | None


def _tracks(overlays: list[Overlay]) -> list[list[Overlay]]:
    """Runs of overlays next to each other in z-order that never overlap in time: one input each.

    Karaoke draws a cue as one image per word; a hundred still inputs cost the encoder a frame queue
    each (1.9 GB measured for 8 clips), a track of them costs one.
    """
    tracks: list[list[Overlay]] = []
    for overlay in overlays:
        track = tracks[-1] if tracks else None
        if track and track[-1].end is not None and overlay.start >= track[-1].end - EPS and track[0].start is not None \
                and overlay.end is not None:
            track.append(overlay)
        else:
            tracks.append([overlay])
    return tracks


def _save(rgba: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(rgba).save(path, compress_level=1)


def write_overlays(plan: Plan, work: Path) -> list[OverlayInput]:
    """PNG files and the ffmpeg inputs that show them, placed on the pixel moviepy would place them on.

    ffmpeg's overlay on 4:2:0 video snaps x and y to even numbers, so images start on an even pixel
    with transparent rows or columns in front where the layer sits on an odd one.
    """
    inputs = []
    for t, track in enumerate(_tracks(plan.overlays)):
        left = min(o.x for o in track) // 2 * 2
        top = min(o.y for o in track) // 2 * 2
        width = max(o.x + o.rgba.shape[1] for o in track) - left
        height = max(o.y + o.rgba.shape[0] for o in track) - top
        if len(track) == 1:
            overlay = track[0]
            rgba = np.pad(overlay.rgba, ((overlay.y - top, 0), (overlay.x - left, 0), (0, 0)))
            path = work / f"layer{t:03d}.png"
            _save(rgba, path)
            inputs.append(OverlayInput(["-i", str(path)], left, top, overlay.start, overlay.end))
            continue
        blank = work / f"track{t:03d}-blank.png"
        _save(np.zeros((height, width, 4), np.uint8), blank)
        # An image shows from the first frame at or after its start, as in moviepy; its timestamp goes half a
        # frame before that frame (millisecond time base) so no rounding can move it to a neighbour.
        snap = lambda t: max(0.0, (math.ceil(t * plan.fps - 1e-6) - 0.5) / plan.fps)  # noqa: E731
        entry = lambda f, seconds: [f"file '{f}'", "option framerate 1000", f"duration {seconds:.4f}"]  # noqa: E731
        lines, clock = ["ffconcat version 1.0"], 0.0
        for k, overlay in enumerate(track):
            start, end = snap(overlay.start), snap(overlay.end)
            if end <= start:
                continue
            if start > clock + EPS:
                lines += entry(blank, start - clock)
            canvas = np.zeros((height, width, 4), np.uint8)
            y, x = overlay.y - top, overlay.x - left
            canvas[y:y + overlay.rgba.shape[0], x:x + overlay.rgba.shape[1]] = overlay.rgba
            path = work / f"track{t:03d}-{k:04d}.png"
            _save(canvas, path)
            lines += entry(path, end - max(start, clock))
            clock = end
        lines += entry(blank, max(plan.duration - clock, 0.1)) + [f"file '{blank}'", "option framerate 1000"]
        listing = work / f"track{t:03d}.txt"
        listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
        inputs.append(OverlayInput(["-f", "concat", "-safe", "0", "-i", str(listing)], left, top, 0.0, None))
    return inputs
