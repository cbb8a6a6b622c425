"""Continuity modes `references` and `extend`: what they send to Veo, what they cost, what they refuse before spend.

`references`: up to 3 images of people or objects ("asset" references) go with every clip of a production, so Veo
draws the same cast in every scene. They come from `--reference-image PATH` (the setting `reference_images`) or a
folder per production (`reference_images_dir/<topic slug or topic>/`). When the production is planned they are
checked, copied into its folder (`references/`) and their sha256s recorded in the ledger (schema 17); the set's
hash enters the production's id, and each image's hash enters every clip's key. Resume and retry send the copies.

`extend`: one continuous shot. Clip 1 is text-to-video; clip N+1 is Veo's extension of clip N's generated video
(clips in order). An extension answers with the whole grown video (N·7 s longer than clip 1); the scene keeps only
its new tail as its clip file (`clip-NN.mp4`, trimmed with ffmpeg) so the cut stays a list of scenes with their
own subtitles, and the whole grown video is kept beside it (`clip-NN.full.mp4`): the next extension's source on
Vertex AI and the mock. The Gemini API takes the previous generation's uri (kept by Google 2 days); Vertex AI its
bytes. An extension's key covers the key of the clip it extends (`source_video`), so a new take of a scene is a
new chain.

Nothing here is paid for: `problems` and `check_prompt` refuse what the model would refuse before any submit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reelcrew.errors import ConfigError
from reelcrew.video.registry import BACKENDS, backend_name, model_limits

log = logging.getLogger("reelcrew.video")
REFERENCE_LIMIT = 3  # Veo 3.1: up to three asset images
REFERENCE_SECONDS = 8  # clips with reference images are 8 s long
EXTEND_STEP_SECONDS = 7  # what one extension adds
EXTEND_RESOLUTION = "720p"  # extensions are made (and extended) at 720p only
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}  # Pillow's format name → the mime type Veo takes
SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg"}
RETENTION_SECONDS = 2 * 24 * 3600  # the Gemini API keeps a generated video this long (video.retention)


@dataclass(frozen=True)
class ReferenceImage:
    sha256: str
    path: Path
    mime: str


@dataclass(frozen=True)
class SourceVideo:
    """The video an extension grows: the previous clip's generation."""

    from_key: str
    seconds: float  # its length (the extension answers with seconds + 7)
    uri: str | None = None  # the Gemini API's file uri (or a gs:// uri on Vertex AI)
    path: Path | None = None  # a local copy of the whole generated video (Vertex AI bytes, the mock)


@dataclass
class ClipInputs:
    """What a clip sends besides its prompt (None for a plain text-to-video clip)."""

    reference_images: list[ReferenceImage] = field(default_factory=list)
    source_video: SourceVideo | None = None

    def __bool__(self) -> bool:
        return bool(self.reference_images or self.source_video)


# -- before any spend ------------------------------------------------------------------------------------------
def problems(settings: Any) -> list[tuple[str, str, str]]:
    """The continuity mode against the backend, the model, the clip length and resolution: (setting, problem, fix)."""
    mode = getattr(settings, "continuity", "none")
    if mode not in ("references", "extend"):
        return []
    backend = backend_name(settings)
    limits = model_limits(settings.veo3_model, backend)
    if mode not in limits.continuity:
        takers = [m for m in BACKENDS[backend].models if mode in BACKENDS[backend].models[m].continuity]
        return [("continuity", f"{settings.veo3_model} does not take continuity {mode} on the {backend} backend",
                 f"set veo3_model to one that does ({', '.join(takers[:3])}), or another continuity mode")]
    found = []
    if mode == "references":
        if settings.clip_seconds != REFERENCE_SECONDS:
            found.append(("clip_seconds", f"clips with reference images are {REFERENCE_SECONDS} s long; "
                          f"clip_seconds is {settings.clip_seconds}", f"set clip_seconds: {REFERENCE_SECONDS}"))
        person = getattr(settings, "veo3_person_generation", None)
        if backend == "gemini" and person not in (None, "allow_adult"):
            found.append(("veo3_person_generation", f"the Gemini API takes only allow_adult with reference images, "
                          f"not {person}", "allow_adult, or leave it unset"))
        if len(settings.reference_images) > REFERENCE_LIMIT:
            found.append(("reference_images", f"{len(settings.reference_images)} reference images given; Veo takes "
                          f"at most {REFERENCE_LIMIT}", f"pass at most {REFERENCE_LIMIT} --reference-image"))
        # no images at all: `plan_references` refuses a new production; a planned one sends its recorded copies
    if mode == "extend":
        if getattr(settings, "veo3_sample_count", 1) > 1:  # which sample would the next extension grow?
            found.append(("veo3_sample_count", "an extended shot is one video: extensions take one sample, "
                          f"VEO3_SAMPLE_COUNT is {settings.veo3_sample_count}", "set VEO3_SAMPLE_COUNT=1"))
        if settings.resolution != EXTEND_RESOLUTION:
            found.append(("resolution", f"Veo extends {EXTEND_RESOLUTION} videos only; resolution is "
                          f"{settings.resolution}", f"set resolution: {EXTEND_RESOLUTION}"))
        if settings.clip_seconds != 8:
            found.append(("clip_seconds", "an extended shot starts with an 8 s clip (extensions ask for 8 s and add "
                          f"{EXTEND_STEP_SECONDS} s); clip_seconds is {settings.clip_seconds}", "set clip_seconds: 8"))
        longest = BACKENDS[backend].extend_input_seconds
        last_input = 8 + EXTEND_STEP_SECONDS * max(0, settings.scenes - 2)
        if settings.scenes > 1 and last_input > longest:
            most = 2 + int((longest - 8) // EXTEND_STEP_SECONDS)
            found.append(("scenes", f"{settings.scenes} scenes would extend a {last_input} s video; the {backend} "
                          f"backend extends videos of at most {longest:.0f} s",
                          f"at most {most} scenes with continuity extend on this backend"))
    return found


def check_settings(settings: Any) -> None:
    """ConfigError (exit 2, nothing spent) for the first problem of `problems`."""
    for name, problem, fix in problems(settings)[:1]:
        raise ConfigError(problem, f"{name}: {fix}")


def check_prompt(settings: Any, prompt: Any) -> None:
    """A written prompt the mode cannot send (e.g. a 4 s clip with reference images): ConfigError before spend."""
    mode = getattr(settings, "continuity", "none")
    if mode == "references" and prompt.duration != REFERENCE_SECONDS:
        raise ConfigError(f"clip {prompt.index} is {prompt.duration} s long; clips with reference images are "
                          f"{REFERENCE_SECONDS} s (nothing was submitted)",
                          f"set its duration to {REFERENCE_SECONDS} in prompts.json (or clip_seconds: "
                          f"{REFERENCE_SECONDS}), or run without continuity references")
    if mode == "extend" and (prompt.resolution != EXTEND_RESOLUTION or prompt.duration != 8):
        raise ConfigError(f"clip {prompt.index} asks for {prompt.duration} s at {prompt.resolution}; an extended shot "
                          f"is made of 8 s requests at {EXTEND_RESOLUTION} (nothing was submitted)",
                          f"set its duration to 8 and resolution to {EXTEND_RESOLUTION} in prompts.json")


# -- reference images: found, checked, copied, recorded ---------------------------------------------------------
def topic_slug(topic: str) -> str:
    from reelcrew.identity import production_id

    return production_id(topic, "", 0, "", "").rpartition("-")[0]


def reference_paths(settings: Any, topic: str) -> list[Path]:
    """The images for this topic: `reference_images` (every topic), else its folder under `reference_images_dir`."""
    if settings.reference_images:
        return [Path(p).expanduser() for p in settings.reference_images]
    folder = settings.reference_images_dir
    if not folder:
        return []
    folder = Path(folder).expanduser()
    for name in (topic_slug(topic), topic):
        if name and (folder / name).is_dir():
            return sorted(p for p in (folder / name).iterdir() if p.is_file() and not p.name.startswith("."))
    raise ConfigError(f"no reference images for {topic!r} in {folder}",
                      f"put up to {REFERENCE_LIMIT} images in {folder / (topic_slug(topic) or topic)}/, or pass "
                      "--reference-image PATH")


def read_reference(path: Path) -> tuple[bytes, str]:
    """The image's bytes and mime type; ConfigError naming the file when it is missing, unreadable or not a
    PNG or JPEG (the types Veo takes)."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"reference image {path} cannot be read ({exc.strerror or exc})",
                          "pass the path of a readable PNG or JPEG file") from None
    try:
        import io

        with Image.open(io.BytesIO(data)) as image:
            image.load()
            kind = image.format or ""
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ConfigError(f"reference image {path} is not an image", "pass a PNG or JPEG file") from None
    if kind not in IMAGE_TYPES:
        raise ConfigError(f"reference image {path} is {kind or 'of an unknown type'}; Veo takes PNG or JPEG",
                          "convert it to PNG or JPEG") from None
    return data, IMAGE_TYPES[kind]


@dataclass
class PlannedReferences:
    """A topic's reference images, read and hashed before its production exists."""

    images: list[tuple[bytes, str, str]]  # (bytes, mime, original name)

    @property
    def identity(self) -> str | None:
        """What enters the production's id: the images' hashes, in order (None: no images)."""
        if not self.images:
            return None
        return hashlib.sha256(json.dumps([hashlib.sha256(data).hexdigest() for data, _, _ in self.images])
                              .encode()).hexdigest()[:16]


def plan_references(settings: Any, topic: str) -> PlannedReferences:
    """The topic's images, checked (count, type, readable): none unless continuity is `references`."""
    if getattr(settings, "continuity", "none") != "references":
        return PlannedReferences([])
    paths = reference_paths(settings, topic)
    if len(paths) > REFERENCE_LIMIT:
        raise ConfigError(f"{len(paths)} reference images for {topic!r}; Veo takes at most {REFERENCE_LIMIT}",
                          f"keep at most {REFERENCE_LIMIT} images")
    if not paths:
        raise ConfigError(f"continuity references has no images for {topic!r}",
                          "pass --reference-image PATH (up to 3), or set reference_images_dir")
    return PlannedReferences([(*read_reference(path), path.name) for path in paths])


def record_references(store: Any, pid: str, folder: Path, planned: PlannedReferences) -> None:
    """Copy the images into the production's folder (`references/<sha256>.<ext>`, written through a rename) and
    record their hashes; a production that has them recorded keeps them."""
    if not planned.images or store.production_references(pid):
        return
    target = folder / "references"
    target.mkdir(parents=True, exist_ok=True)
    rows = []
    for data, mime, name in planned.images:
        digest = hashlib.sha256(data).hexdigest()
        dest = target / f"{digest}{SUFFIXES[mime]}"
        if not dest.exists():
            tmp = dest.with_name(dest.name + ".part")
            tmp.write_bytes(data)
            tmp.replace(dest)
        rows.append({"sha256": digest, "name": name, "mime": mime})
    store.record_references(pid, rows)


def production_images(store: Any, pid: str, folder: Path) -> list[ReferenceImage]:
    """The production's recorded images, from its folder; ConfigError when a copy is gone or changed."""
    out = []
    for row in store.production_references(pid):
        path = folder / "references" / f"{row['sha256']}{SUFFIXES.get(row['mime'] or '', '.png')}"
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != row["sha256"]:
            raise ConfigError(f"reference image {row['name']} of {pid} is missing or changed ({path})",
                              f"put the original image back at {path} (its sha256 is {row['sha256']})")
        out.append(ReferenceImage(row["sha256"], path, row["mime"] or "image/png"))
    return out


# -- clip keys -----------------------------------------------------------------------------------------------
def clip_options(settings: Any, store: Any, pid: str, prompts: list[Any], model: str, rehearsal: bool
                 ) -> dict[int, dict[str, Any]]:
    """Per prompt index, the options that enter its clip key (registry.veo_options plus the continuity inputs):
    the reference images' hashes, or the key of the clip an extension grows."""
    from reelcrew.video.registry import veo_options

    base = veo_options(settings)
    mode = getattr(settings, "continuity", "none")
    out: dict[int, dict[str, Any]] = {}
    # a production planned with images keeps sending them (resume and retry, whatever today's settings say)
    hashes = tuple(row["sha256"] for row in store.production_references(pid))
    previous: str | None = None
    for prompt in sorted(prompts, key=lambda p: p.index):
        options = dict(base)
        if hashes:
            options["reference_images"] = hashes
        if mode == "extend" and previous is not None:
            options["source_video"] = f"extend:{previous}"
        out[prompt.index] = options
        previous = prompt.clip_key(model, rehearsal=rehearsal, **options)
    return out


# -- what a clip sends --------------------------------------------------------------------------------------
def inputs_for(settings: Any, store: Any, clip: Any, folder: Path | None = None) -> ClipInputs | None:
    """The continuity inputs of this clip (None in the other modes). An extension grows the last done clip before
    it; with none done (the first clip, or every earlier one failed) the clip starts the shot from text alone."""
    mode = getattr(settings, "continuity", "none")
    if store.production_references(clip.production_id):  # planned with images: they go with every clip
        folder = folder or _production_folder(settings, store, clip.production_id)
        return ClipInputs(reference_images=production_images(store, clip.production_id, folder))
    if mode != "extend":
        return None
    scenes = [c for c in store.production_clips(clip.production_id)]
    mine = next((c for c in scenes if c.key == clip.key), clip)
    earlier = [c for c in scenes if c.index < mine.index and c.status.value == "done"]
    if not earlier:
        return None
    source = earlier[-1]
    return ClipInputs(source_video=_source(settings, source, time.time()))


def _production_folder(settings: Any, store: Any, pid: str) -> Path:
    prod = store.production(pid)
    return Path(prod.folder) if prod is not None and prod.folder else Path(settings.reelcrew_output_dir) / pid


def full_path(dest: Path) -> Path:
    """Where the whole generated video of an extended clip is kept, beside the scene's clip."""
    return dest.with_name(f"{dest.stem}.full{dest.suffix}")


def _source(settings: Any, clip: Any, now: float) -> SourceVideo:
    """The previous clip's generated video; ConfigError when it can no longer be extended."""
    from reelcrew.media import probe
    from reelcrew.video.retention import on_gemini_api

    local = None
    if clip.path:
        whole = full_path(Path(clip.path))
        local = whole if whole.is_file() else Path(clip.path) if Path(clip.path).is_file() else None
    # its length: measured here, else what an unbroken chain makes it (clip 1: 8 s, each extension 7 s more)
    seconds = probe(local).duration if local is not None else float(8 + EXTEND_STEP_SECONDS * (clip.index - 1))
    backend = backend_name(settings)
    if backend == "gemini":
        if not clip.video_uri or not on_gemini_api(clip.operation_name):
            raise ConfigError(f"clip {clip.index} of {clip.production_id} has no Gemini API video to extend",
                              f"run `reelcrew retry {clip.production_id} --clip {clip.index}` to make it again")
        if clip.submitted_at and now - clip.submitted_at > RETENTION_SECONDS:
            raise ConfigError(f"clip {clip.index} of {clip.production_id} was generated more than 2 days ago; the "
                              "Gemini API has deleted its video, so the next scene cannot extend it (nothing was "
                              "submitted)", f"run `reelcrew retry {clip.production_id} --clip {clip.index}` to "
                              "generate it again (paid), then resume")
        return SourceVideo(clip.key, seconds, uri=clip.video_uri)
    if clip.video_uri and clip.video_uri.startswith("gs://"):
        return SourceVideo(clip.key, seconds, uri=clip.video_uri)
    if local is None:
        raise ConfigError(f"the video of clip {clip.index} of {clip.production_id} is not on this machine; the next "
                          "scene extends it", "run `reelcrew repair` (or resume on the machine that made it)")
    return SourceVideo(clip.key, seconds, path=local)


# -- after the download ---------------------------------------------------------------------------------------
def keep_new_part(downloaded: Path, dest: Path, inputs: ClipInputs | None) -> float | None:
    """An extension's answer is the whole grown video: keep it beside the scene (`full_path(dest)`) and leave in
    `downloaded` only the part it added. Returns the seconds the scene's clip should last (None: not an extension,
    the request's duration)."""
    if not inputs or inputs.source_video is None:
        return None
    from reelcrew.media import probe, run_ffmpeg

    total = probe(downloaded).duration
    added = total - inputs.source_video.seconds
    whole = full_path(dest)
    tmp = whole.with_name(whole.name + ".part")
    shutil.copyfile(downloaded, tmp)
    tmp.replace(whole)
    if added < EXTEND_STEP_SECONDS - 1:  # the backend answered with the new part only: it is the scene
        return total
    cut = downloaded.with_name(downloaded.name + ".tail.mp4")
    try:
        run_ffmpeg(["-ss", f"{inputs.source_video.seconds:.3f}", "-i", str(whole), "-c:v", "libx264", "-preset",
                    "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart",
                    "-f", "mp4", str(cut)], f"cutting the new part of extended clip {dest.name}")
        cut.replace(downloaded)
    finally:
        cut.unlink(missing_ok=True)
    return probe(downloaded).duration


# -- money ------------------------------------------------------------------------------------------------------
def billed_seconds(settings: Any, index: int, duration: float) -> float:
    """The seconds a clip's request is priced at: an extension (scene 2 on, in continuity extend) adds 7 s and
    answers with the whole grown video; `extend_billing` says which of the two is billed (`output`: the upper
    bound, 8 + 7·(N-1) s for scene N)."""
    if getattr(settings, "continuity", "none") != "extend" or index <= 1:
        return duration
    if getattr(settings, "extend_billing", "output") == "added":
        return float(EXTEND_STEP_SECONDS)
    return float(duration + EXTEND_STEP_SECONDS * (index - 1))


def in_order(settings: Any) -> bool:
    """A production's clips one after another: asked for (`reelcrew_clips_in_order`), or needed by the mode (an
    extension grows the clip before it; a last frame is taken from it)."""
    return bool(getattr(settings, "reelcrew_clips_in_order", False)
                or getattr(settings, "continuity", "none") in ("last_frame", "extend"))
