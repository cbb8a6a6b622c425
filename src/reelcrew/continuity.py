"""Continuity between a production's clips (setting `continuity`, recorded per production): what each mode needs
before any spend, and `last_frame`, where clip N+1 starts from the last frame of clip N (image-to-video).

`last_frame` makes a production's clips one after another (`reelcrew_clips_in_order`, set by
`identity.settings_for`); other productions keep the quota busy meanwhile. A clip's key hashes its first frame's
content (DESIGN: the clip key is the request), so the key of clip N+1 is only known once clip N rests. The clip
rows are planned text-only from the prompts; when clip N+1's turn comes (`chain`, at its submit step), the last
frame of the production's last good clip before it is extracted (ffmpeg, same size as the clip) to
`clips/clip-NN.first.png`, and the scene is linked to the clip row of that request (made when new). The planned
text-only row is left unsent and unlinked (it costs nothing). A row already at Veo, or settled, is never re-keyed:
nothing is paid twice. Re-running re-derives the same frame from the same clip file, so the same key, so the clip
made before is found again (done: reused; in flight: re-attached). After a filtered or failed clip, the next one
starts from the last good clip's last frame, or from its words alone when there is none.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from reelcrew.errors import ConfigError

log = logging.getLogger("reelcrew.continuity")
MODES = ("none", "last_frame", "references", "extend")
IN_ORDER = frozenset({"last_frame", "extend"})  # clips one after another (each needs the previous one's end)
BUILT = frozenset(MODES)  # a mode named here but not built would refuse before any spend
FRAME_SECONDS_FROM_END = 0.25  # ffmpeg reads the clip's last quarter second and keeps its last decoded frame


def refuse_unbuilt(mode: str) -> None:
    """A mode not built yet never runs silently as `none`: refused before anything is written or paid."""
    if mode not in BUILT:
        raise ConfigError(f"continuity {mode} is not available in this version",
                          f"use continuity {' or '.join(sorted(BUILT))} (setting `continuity`, `--continuity`)")


def problems(settings: Any) -> list[str]:
    """What the chosen backend and model would refuse in this continuity mode (checked at plan time and before
    a production's first submit), each naming the setting to change."""
    from reelcrew.video.registry import backend_name, model_limits

    mode = getattr(settings, "continuity", "none")
    if mode != "last_frame":
        return []
    backend = backend_name(settings)
    limits = model_limits(settings.veo3_model, backend)
    out = []
    if not limits.first_frame_durations:
        out.append(f"{settings.veo3_model} on the {backend} backend takes no first frame (image-to-video); "
                   "choose another VEO3_MODEL or continuity none")
    elif settings.clip_seconds not in limits.first_frame_durations:
        allowed = ", ".join(map(str, limits.first_frame_durations))
        out.append(f"clip_seconds {settings.clip_seconds} is refused for image-to-video by {settings.veo3_model} "
                   f"(allowed: {allowed} s); set clip_seconds to one of them")
    person = getattr(settings, "veo3_person_generation", None)
    if backend == "gemini" and person is not None:
        out.append(f"veo3_person_generation={person}: on the Gemini API text-to-video takes only allow_all and "
                   "image-to-video only allow_adult (sent by reelcrew for clips 2+); leave it unset")
    return out


def check(settings: Any) -> None:
    """Refuse (ConfigError, nothing spent) a mode that is not built or that the backend and model would refuse."""
    mode = getattr(settings, "continuity", "none")
    refuse_unbuilt(mode)
    if mode in ("references", "extend"):
        from reelcrew.video.continuity_refs import check_settings

        check_settings(settings)
    found = problems(settings)
    if found:
        raise ConfigError(f"continuity {mode}: " + "; ".join(found),
                          "change the settings named above, or run with --continuity none")


# -- last_frame --------------------------------------------------------------------------------------------
def frame_path(folder: Path, index: int) -> Path:
    return folder / "clips" / f"clip-{index:02d}.first.png"


def extract_last_frame(video: Path, dest: Path) -> str:
    """The last frame of `video` as a PNG at `dest` (its size), written through a rename; returns its sha256.
    Deterministic: the same clip file gives the same bytes (so the same clip key)."""
    from reelcrew.files import part_path, sha256_file
    from reelcrew.media import run_ffmpeg

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(dest, ".png")
    try:
        run_ffmpeg(["-sseof", f"-{FRAME_SECONDS_FROM_END}", "-i", str(video), "-an", "-update", "1",
                    "-fflags", "+bitexact", "-flags:v", "+bitexact", "-c:v", "png", "-f", "image2", str(tmp)],
                   f"taking the last frame of {video.name}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return sha256_file(dest)


def frame_bytes(frame: Any) -> bytes:
    """The first frame's PNG; ValueError when the file is missing or is not the picture the key was made for."""
    import hashlib

    try:
        data = Path(frame.path).read_bytes()
    except OSError as exc:
        raise ValueError(f"first frame {frame.path} cannot be read ({exc})") from None
    if hashlib.sha256(data).hexdigest() != frame.sha256:
        raise ValueError(f"first frame {frame.path} changed since its clip was planned")
    return data


def _intact(frame: Any) -> bool:
    try:
        frame_bytes(frame)
    except ValueError:
        return False
    return True


def restore_frame(settings: Any, store: Any, prompt: Any) -> None:
    """The prompt's first frame back on this machine when it is missing (another worker, a cleaned folder): taken
    again from the clip it came from. A frame that no longer matches is left as it is (the submit refuses it)."""
    frame = getattr(prompt, "first_frame", None)
    if frame is None or Path(frame.path).is_file():
        return
    from reelcrew import artifacts

    source = store.clip(frame.from_key)
    folder = Path(frame.path).parent
    video = artifacts.local_clip(settings, source, folder / f"clip-{frame.from_index:02d}.mp4")
    if video is not None:
        extract_last_frame(video, Path(frame.path))


def chain(settings: Any, store: Any, folder: Path, pid: str, key: str, index: int) -> str:
    """The key clip `index` of the production is made with in `last_frame` mode: its planned request with the last
    frame of the last good clip before it (or its words alone when there is none). A clip at Veo or settled keeps
    its key. Called at the clip's submit step, when every clip before it rests (clips go in order)."""
    from reelcrew import artifacts
    from reelcrew.models import ClipStatus, FirstFrame
    from reelcrew.video.registry import backend_spec, veo_options

    if getattr(settings, "continuity", "none") != "last_frame":
        return key
    clip = store.clip(key)
    if clip.status not in (ClipStatus.pending, ClipStatus.paused) or clip.operation_name:
        return key  # claimed, at Veo or settled: never re-keyed (its request may be paid for)
    before = [c for c in store.production_clips(pid) if c.index < index and c.status == ClipStatus.done]
    current = clip.prompt.first_frame
    if (not before and current is None) or (before and current is not None and current.from_key == before[-1].key
                                            and _intact(current)):
        return key  # already the request it should be (a step that waited for a slot comes back here often)
    frame = None
    if before:
        source = before[-1]
        video = artifacts.local_clip(settings, source, folder / "clips" / f"clip-{source.index:02d}.mp4")
        if video is not None:
            dest = frame_path(folder, index)
            digest = extract_last_frame(video, dest)
            frame = FirstFrame(sha256=digest, path=str(dest.resolve()), from_key=source.key, from_index=source.index)
        else:
            log.warning("clip %d of %s: the file of clip %d is gone; it starts from its words alone", index, pid,
                        source.index)
    if (frame is None and current is None) or (frame is not None and current is not None
                                               and frame.sha256 == current.sha256):
        return key
    wanted = clip.prompt.model_copy(update={"first_frame": frame})
    fresh = store.ensure_clip(pid, wanted, clip.model, rehearsal=not backend_spec(settings).paid,
                              options=veo_options(settings))
    if frame is not None:
        store.log("continuity", f"clip {index} starts from the last frame of clip {frame.from_index}", pid, index,
                  "clips")
    return fresh.key


def kept_link(store: Any, pid: str, prompt: Any) -> Any | None:
    """The clip the scene is linked to when it is this prompt's request with a first frame (`chain` made it):
    planning the clips again (resume, retry) keeps that link instead of the text-only row."""
    linked = next((c for c in store.production_clips(pid) if c.index == prompt.index), None)
    if linked is None or linked.prompt.first_frame is None:
        return None
    return linked if linked.prompt.model_copy(update={"first_frame": None}) == prompt else None
