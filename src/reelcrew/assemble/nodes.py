"""The moviepy node types reelcrew builds a cut from, beside moviepy's own ImageClip and composites.

A SourceClip is a generated clip as a moviepy VideoClip: it has a start, a duration, an in-point and the
transition that brings it in. It opens no ffmpeg reader until a frame is asked for, so building (and
editing) a composition of 24 clips costs nothing; on the fast path no frame is ever asked for: the
compiler reads these attributes and ffmpeg decodes. On the moviepy path its frames come from the same
ffmpeg segment decoder as the fast path (fit, fps and xfade included), so both paths show the same video.
SourceAudio and MusicBed are the soundtrack's parts, with the same two lives.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from moviepy import AudioClip, VideoClip

from reelcrew.children import dies_with_parent
from reelcrew.media import MediaInfo, ffmpeg_exe

if TYPE_CHECKING:
    from moviepy import AudioFileClip


class FrameReader:
    """Frames of one ffmpeg command read in order (rawvideo rgb24 on stdout); seeks back by restarting it."""

    def __init__(self, command: list[str], width: int, height: int):
        self.command, self.width, self.height = command, width, height
        self.proc: subprocess.Popen | None = None
        self.index = -1
        self.frame = np.zeros((height, width, 3), np.uint8)

    def _read_one(self) -> bool:
        size = self.width * self.height * 3
        data = self.proc.stdout.read(size) if self.proc and self.proc.stdout else b""  # stdout is always a PIPE
        if len(data) < size:
            return False
        self.frame = np.frombuffer(data, np.uint8).reshape(self.height, self.width, 3)
        self.index += 1
        return True

    def get(self, index: int) -> np.ndarray:
        if self.proc is None or index < self.index:
            self.close()
            self.proc = subprocess.Popen(dies_with_parent(self.command), stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)
            self.index = -1
        while self.index < index:
            if not self._read_one():
                break  # past the end: the last frame stays
        return self.frame

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def _own(node, method) -> bool:
    function = node.frame_function
    return getattr(function, "__func__", None) is method and getattr(function, "__self__", None) is node


class _Rebinding:
    """moviepy's `with_*` methods copy a clip; a copy's frame function must read the copy's start and fades."""

    def __copy__(self):
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update(self.__dict__)
        for attr in ("mask", "audio"):  # as moviepy's VideoClip.__copy__ does
            if self.__dict__.get(attr) is not None:
                setattr(new, attr, copy.copy(self.__dict__[attr]))
        function = self.__dict__.get("frame_function")
        if function is not None and getattr(function, "__self__", None) is self:
            setattr(new, "frame_function", getattr(new, function.__name__))  # noqa: B010 (not declared on the mixin)
        return new

    def copy(self):
        return self.__copy__()


class SourceClip(_Rebinding, VideoClip):
    """A clip file laid on the cut's timeline; `transition` names how it comes in over the clip before it."""

    def __init__(self, path: Path, info: MediaInfo, size: tuple[int, int], fps: float, fit: str = "cover",
                 transition: str | None = None, transition_duration: float = 0.0, in_point: float = 0.0,
                 duration: float | None = None):
        super().__init__(duration=duration if duration is not None else info.duration - in_point)
        self.path, self.info, self.fit = Path(path), info, fit
        self.transition, self.transition_duration = transition, transition_duration
        self.in_point = in_point
        self.size, self.fps = tuple(size), fps
        self.frame_function = self._frame
        self.plan: Any = None  # set by the moviepy path: this node's stretch of the segment plan
        if info.has_audio:
            self.audio = SourceAudio(self.path, in_point, self.duration, transition)

    def _frame(self, t: float) -> np.ndarray:
        if self.plan is None:
            self.plan = _standalone_plan(self)
        return self.plan.frame(self, t)

    def subclipped(self, start_time: float = 0, end_time: float | None = None) -> SourceClip:
        """A retime the fast path understands: a later in-point and a shorter duration."""
        end_time = self.duration if end_time is None else (end_time if end_time >= 0 else self.duration + end_time)
        new = copy.copy(self)
        new.in_point = self.in_point + start_time
        new.duration = end_time - start_time
        new.end = new.start + new.duration
        new.plan = None
        new.frame_function = new._frame
        if self.audio is not None:
            new.audio = self.audio.subclipped(start_time, end_time).with_start(new.start)
        return new

    def is_pristine(self) -> bool:
        """True while nothing moviepy-side (an effect, a transform) replaced how its frames are made."""
        return _own(self, SourceClip._frame) and self.mask is None

    def close(self) -> None:
        if self.plan is not None:
            self.plan.close()
        super().close()


def _fit_filter(info: MediaInfo, width: int, height: int, fps: float, fit: str) -> str:
    steps = []
    if (info.width, info.height) != (width, height):
        steps.append(f"scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height}"
                     if fit == "cover" else f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
                          f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2")
    steps.append("setsar=1")
    if abs(info.fps - fps) > 0.01:
        steps.append(f"fps={fps}")
    steps.append("format=yuv420p")
    return ",".join(steps)


class _Standalone:
    """Frames of one SourceClip on its own (no neighbours): used when a node was transformed by moviepy."""

    def __init__(self, node: SourceClip):
        width, height = node.size
        self.fps = node.fps
        fit = _fit_filter(node.info, width, height, node.fps, node.fit)
        self.reader = FrameReader([ffmpeg_exe(), "-v", "error", "-nostdin", "-ss", f"{node.in_point:.4f}", "-i",
                                   str(node.path), "-vf", f"{fit},tpad=stop_mode=clone:stop_duration=1", "-f",
                                   "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], width, height)

    def frame(self, node: SourceClip, t: float) -> np.ndarray:
        return self.reader.get(max(0, round(t * self.fps)))

    def close(self) -> None:
        self.reader.close()


def _standalone_plan(node: SourceClip) -> _Standalone:
    return _Standalone(node)


class _LazyAudioFile:
    """The file's decoder opened on the first frame asked for: a cut of many clips never holds them all open."""

    path: Path
    fps: int
    _reader: AudioFileClip | None = None

    def _opened(self) -> AudioFileClip:
        from moviepy import AudioFileClip

        if self._reader is None:
            self._reader = AudioFileClip(str(self.path), fps=self.fps, nbytes=2)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class SourceAudio(_LazyAudioFile, _Rebinding, AudioClip):
    """A clip's sound; its fades are decided from its neighbours when the cut is rendered."""

    def __init__(self, path: Path, in_point: float, duration: float, transition: str | None = None):
        super().__init__(duration=duration, fps=48000)
        self.path, self.in_point, self.transition = Path(path), in_point, transition
        self.fade_in: tuple[float, str] = (0.0, "tri")  # (seconds, afade curve), set by the compiler
        self.fade_out: tuple[float, str] = (0.0, "tri")
        self.nchannels = 2
        self.frame_function = self._frame

    def _frame(self, t):
        reader = self._opened()
        t = np.asarray(t)
        samples = reader.get_frame(np.clip(t + self.in_point, 0, reader.duration - 1e-3))
        gain = np.ones_like(t, dtype=float)
        if self.fade_in[0]:
            gain *= np.clip(t / self.fade_in[0], 0, 1)
        if self.fade_out[0]:
            gain *= np.clip((self.duration - t) / self.fade_out[0], 0, 1)
        return samples * (gain[:, None] if np.ndim(samples) == 2 else gain)

    def subclipped(self, start_time: float = 0, end_time: float | None = None) -> SourceAudio:
        new = copy.copy(self)
        new.in_point = self.in_point + start_time
        new.duration = (self.duration if end_time is None else end_time) - start_time
        new.end = new.start + new.duration
        new.frame_function = new._frame
        return new

    def is_pristine(self) -> bool:
        return _own(self, SourceAudio._frame)


class MusicBed(_LazyAudioFile, _Rebinding, AudioClip):
    """Background music looped or cut to the video, faded in and out, at a volume."""

    def __init__(self, path: Path, duration: float, volume: float, fade: float):
        super().__init__(duration=duration, fps=48000)
        self.path, self.volume, self.fade = Path(path), volume, fade
        self.nchannels = 2
        self.frame_function = self._frame

    def _frame(self, t):
        reader = self._opened()
        t = np.asarray(t)
        samples = reader.get_frame(np.mod(t, reader.duration - 1e-3))
        gain = np.full(np.shape(t), self.volume, dtype=float)
        if self.fade:
            gain *= np.clip(t / self.fade, 0, 1) * np.clip((self.duration - t) / self.fade, 0, 1)
        return samples * (gain[:, None] if np.ndim(samples) == 2 else gain)

    def is_pristine(self) -> bool:
        return _own(self, MusicBed._frame)
