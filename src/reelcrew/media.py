"""Media facts through the ffmpeg that ships in the imageio-ffmpeg wheel (no system ffmpeg needed).

Both the video tool (is this download a real clip?) and the assembly (what came in?) ask
the same questions, so they are answered here once.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from reelcrew.children import dies_with_parent


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class MediaInfo:
    duration: float
    width: int
    height: int
    fps: float
    has_audio: bool

    @property
    def aspect(self) -> float:
        return self.width / self.height


class MediaError(Exception):
    pass


def probe(path: Path | str) -> MediaInfo:
    """Duration, size, fps and audio of a file; MediaError if ffmpeg cannot read it as a video."""
    from moviepy.video.io.ffmpeg_reader import ffmpeg_parse_infos

    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        raise MediaError(f"{path} is missing or empty")
    try:
        info = ffmpeg_parse_infos(str(path))
    except (OSError, IndexError, KeyError, ValueError) as exc:
        raise MediaError(f"{path} is not a readable video: {str(exc).splitlines()[0][:200]}") from None
    if not info.get("video_found") or not info.get("video_size"):
        raise MediaError(f"{path} has no video stream")
    width, height = info["video_size"]
    return MediaInfo(duration=float(info.get("video_duration") or info.get("duration") or 0.0), width=int(width),
                     height=int(height), fps=float(info.get("video_fps") or 0.0),
                     has_audio=bool(info.get("audio_found")))


def decodes(path: Path | str) -> str | None:
    """None when the last second decodes cleanly, else ffmpeg's complaint (a truncated file fails here)."""
    result = subprocess.run(dies_with_parent([ffmpeg_exe(), "-v", "error", "-sseof", "-1", "-i", str(path),
                                              "-f", "null", "-"]), capture_output=True, text=True)
    if result.returncode != 0 or "error" in result.stderr.lower() or "invalid" in result.stderr.lower():
        return (result.stderr.strip().splitlines() or ["ffmpeg could not decode it"])[-1][:300]
    return None


def run_ffmpeg(args: list[str], what: str) -> None:
    """ffmpeg, killed with us if we are killed; a full disk or a read-only folder it hit is a StorageError."""
    from reelcrew.storage import message_cause, storage_error

    result = subprocess.run(dies_with_parent([ffmpeg_exe(), "-y", "-hide_banner", "-v", "error", *args]),
                            capture_output=True, text=True)
    if result.returncode != 0:
        output = Path(args[-1])
        cause = message_cause(result.stderr, output)
        if cause:
            raise storage_error(cause, output, f"{output.name} ({what})")
        raise MediaError(f"ffmpeg failed while {what}: {result.stderr.strip()[-600:]}")

