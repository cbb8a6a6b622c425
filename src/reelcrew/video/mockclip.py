"""Renders the mock backend's clips: real, playable MP4s of the requested shape with sound.

Each prompt gets its own colour, motion and tone (from a hash of the prompt) and its words
drawn on screen, so a rehearsal's final cut shows which clip is which. A prompt with a first frame (continuity
last_frame) shows that picture alone for its first FIRST_FRAME_SECONDS, as Veo's image-to-video starts from it.

A clip is a pure function of its inputs, so each one rendered is kept in the user's cache folder under a
hash of those inputs: rehearsing the same topic again (or resuming, or retrying) copies it instead of
running ffmpeg. The cache keeps the newest MOCK_CACHE_CLIPS clips.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
from pathlib import Path

from reelcrew.media import run_ffmpeg
from reelcrew.models import VideoPrompt, frame_size

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
MOCK_CACHE_CLIPS = 200
FIRST_FRAME_SECONDS = 0.5  # a clip given a first frame shows it alone this long, then its own moving picture
RENDER_VERSION = 2  # bump when the ffmpeg recipe below changes, so old cached clips are not reused
log = logging.getLogger("reelcrew.video")


def _label(prompt: VideoPrompt) -> str:
    """The clip's own words: prompts often open with a shared style sentence, so prefer the second sentence."""
    sentences = [p for p in prompt.prompt.split(". ") if p.strip()]
    words = re.findall(r"[A-Za-z0-9]+", sentences[1] if len(sentences) > 1 else prompt.prompt)
    text = " ".join(words[:6]) or "clip"
    return f"{prompt.index}  {text}"[:48]


def render_mock_clip(prompt: VideoPrompt, dest: Path, fps: int = 24, audio: bool = True,
                     overlays: list[Path] | None = None) -> None:
    """The clip for `prompt` at `dest`: a copy of the identical clip rendered before, else rendered now.
    `overlays`: continuity reference images, shown small in the top corner, side by side (the mock's "cast")."""
    overlays = overlays or []
    extra = tuple(hashlib.sha256(path.read_bytes()).hexdigest() for path in overlays)
    cached = _cache_dir() / f"{_cache_key(prompt, fps, audio, extra)}.mp4"
    if cached.is_file():
        try:
            shutil.copyfile(cached, dest)
            os.utime(cached)  # recently used: kept when the cache drops its oldest
            return
        except OSError as exc:  # rendering reports a full disk or a read-only folder with what to do
            log.debug("mock clip cache not used (%s)", exc)
    _render(prompt, dest, fps, audio, overlays)
    _keep(dest, cached)


def _cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("reelcrew")) / "mock-clips"


def _cache_key(prompt: VideoPrompt, fps: int, audio: bool, extra: tuple = ()) -> str:
    """Everything the rendered bytes depend on."""
    parts: tuple = (RENDER_VERSION, prompt.prompt, _label(prompt), frame_size(prompt.aspect_ratio, prompt.resolution),
                    prompt.duration, fps, audio, DEJAVU.exists(), *extra)
    if prompt.first_frame is not None:  # continuity last_frame: the picture it starts from
        parts += (prompt.first_frame.sha256, FIRST_FRAME_SECONDS)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def _keep(rendered: Path, cached: Path) -> None:
    """Copy a fresh render into the cache (through a rename, so no reader sees half a file); drop the oldest."""
    tmp = cached.with_name(f"{cached.stem}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rendered, tmp)
        os.replace(tmp, cached)
        clips = sorted(cached.parent.glob("*.mp4"), key=lambda path: path.stat().st_mtime_ns)
        for old in clips[:-MOCK_CACHE_CLIPS]:
            old.unlink(missing_ok=True)
    except OSError as exc:  # the cache is a convenience: a full or read-only cache folder costs a re-render
        log.debug("mock clip not cached (%s)", exc)
        tmp.unlink(missing_ok=True)


def _render(prompt: VideoPrompt, dest: Path, fps: int, audio: bool, overlays: list[Path] | None = None) -> None:
    h = hashlib.sha256(prompt.prompt.encode()).digest()
    width, height = frame_size(prompt.aspect_ratio, prompt.resolution)
    colour = f"0x{h[0]:02x}{h[1]:02x}{h[2]:02x}"
    box = f"0x{255 - h[0]:02x}{255 - h[1]:02x}{255 - h[2]:02x}"
    size = min(width, height) // 5
    speed = 80 + h[3] % 200
    tone = 220 + (h[4] % 40) * 11
    label = _label(prompt).replace("'", "").replace(":", " ").replace("\\", " ")
    # The box is overlaid (evaluated per frame) so the picture really moves: drawbox reads `t` once, which made
    # every mock clip a still picture that a quality check rightly calls frozen.
    graph = f"[0:v][2:v]overlay=x='mod(t*{speed},{width})':y={height // 2 - size // 2}:shortest=1"
    if DEJAVU.exists():
        graph += (f",drawtext=fontfile={DEJAVU}:text='{label}':fontsize={max(18, height // 24)}:fontcolor=white:"
                  f"borderw=2:x=(w-tw)/2:y=h/6")
    images: list[str] = []
    if prompt.first_frame is not None:  # like Veo's image-to-video: the clip starts where the previous one ended
        images = ["-loop", "1", "-framerate", str(fps), "-t", str(prompt.duration), "-i", prompt.first_frame.path]
        graph += (f"[body];[3:v]scale={width}:{height},format=yuv420p[still];"
                  f"[body][still]overlay=0:0:enable='lt(t,{FIRST_FRAME_SECONDS})'")
    first_overlay = 3 + (prompt.first_frame is not None)  # the ffmpeg input of the first reference image
    for number, image in enumerate(overlays or []):  # reference images: small, top right, side by side
        images += ["-loop", "1", "-t", str(prompt.duration), "-i", str(image)]
        right = (number + 1) * (size + 8)
        graph += (f"[base{number}];[{first_overlay + number}:v]scale={size}:{size}:force_original_aspect_ratio="
                  f"decrease,format=rgba[ref{number}];[base{number}][ref{number}]overlay=x=W-{right}:y=8:shortest=1")
    run_ffmpeg([
        "-f", "lavfi", "-i", f"color=c={colour}:s={width}x{height}:r={fps}:d={prompt.duration}",
        "-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=48000:duration={prompt.duration}",
        "-f", "lavfi", "-i", f"color=c={box}:s={size}x{size}:r={fps}:d={prompt.duration}", *images,
        "-filter_complex", graph + "[v]", "-map", "[v]", *(["-map", "1:a"] if audio else []),
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-ac", "2", "-shortest", "-movflags", "+faststart",
        "-f", "mp4", str(dest)], f"rendering a mock clip to {dest}")


def render_mock_extension(prompt: VideoPrompt, source, dest: Path, fps: int = 24, audio: bool = True) -> None:
    """A mock extension, as Veo answers one: the whole source video grown by 7 s. The new part continues the
    source's last picture (its colour and its moving box, frozen into the background) with a second box moving on
    from the left, the new prompt's words and tone; deterministic for the same source and prompt."""
    from reelcrew.video.continuity_refs import EXTEND_STEP_SECONDS

    if source.path is None:
        raise RuntimeError("a mock extension needs its source video on this machine")
    h = hashlib.sha256(prompt.prompt.encode()).digest()
    width, height = frame_size(prompt.aspect_ratio, prompt.resolution)
    size, speed, tone = min(width, height) // 5, 80 + h[3] % 200, 220 + (h[4] % 40) * 11
    box = f"0x{255 - h[0]:02x}{255 - h[1]:02x}{255 - h[2]:02x}"
    label = _label(prompt).replace("'", "").replace(":", " ").replace("\\", " ")
    step = EXTEND_STEP_SECONDS
    graph = (f"[1:v]scale={width}:{height},fps={fps},setsar=1,format=yuv420p[still];"
             f"[still][2:v]overlay=x='mod(t*{speed},{width})':y={height // 2 + size // 2}:shortest=1")
    if DEJAVU.exists():
        graph += (f",drawtext=fontfile={DEJAVU}:text='{label}':fontsize={max(18, height // 24)}:fontcolor=white:"
                  f"borderw=2:x=(w-tw)/2:y=h/6")
    graph += f"[new];[0:v]scale={width}:{height},fps={fps},setsar=1,format=yuv420p[old];"
    if audio:
        graph += "[old][0:a][new][3:a]concat=n=2:v=1:a=1[v][a]"
    else:
        graph += "[old][new]concat=n=2:v=1:a=0[v]"
    last = dest.with_name(dest.name + ".last.png")
    try:
        run_ffmpeg(["-sseof", "-0.1", "-i", str(source.path), "-frames:v", "1", "-update", "1", str(last)],
                   f"the last picture of {source.path}")
        run_ffmpeg([
            "-i", str(source.path), "-loop", "1", "-t", str(step), "-i", str(last),
            "-f", "lavfi", "-i", f"color=c={box}:s={size}x{size}:r={fps}:d={step}",
            "-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=48000:duration={step}",
            "-filter_complex", graph, "-map", "[v]", *(["-map", "[a]"] if audio else []),
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
            "-ac", "2", "-movflags", "+faststart", "-f", "mp4", str(dest)], f"rendering a mock extension to {dest}")
    finally:
        last.unlink(missing_ok=True)
