"""The pydantic types that cross stages.

Each stage's output is one of these, persisted as JSON before the next stage starts,
so a re-run can pick up any stage's output and skip the work (and the spend).
"""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

Aspect = Literal["16:9", "9:16"]
Resolution = Literal["720p", "1080p"]


def frame_size(aspect: str, resolution: str) -> tuple[int, int]:
    """Pixel size Veo delivers for an aspect and resolution (width, height)."""
    short = {"720p": 720, "1080p": 1080}[resolution]
    long = short * 16 // 9
    return (long, short) if aspect == "16:9" else (short, long)


class Scene(BaseModel):
    index: int = Field(ge=1)
    narration: str = Field(min_length=1, description="What is said or shown as the subtitle for this scene")
    visual: str = Field(min_length=1, description="What the camera sees: subject, action, setting")
    duration: int = Field(default=8, description="Seconds: 4, 6 or 8")
    mood: str = Field(default="", description="One word for the scene's feeling (calm, tense, joyful, ...); "
                      "picks its incoming transition through transitions.by_mood")


class Character(BaseModel):
    """One member of the cast bible: the Maker copies `look` word for word into every prompt, so Veo, which
    sees each clip alone, draws the same person (face, hair, clothes) in every scene."""

    name: str = Field(min_length=1, description="What the script calls them")
    look: str = Field(min_length=8, max_length=300, description="Fixed visual description in English: age, face, "
                      "hair, build and clothes, concrete enough to draw the same person twice")


class Script(BaseModel):
    title: str = Field(min_length=1)
    hook: str = Field(min_length=1)
    language: str = Field(min_length=2, description="BCP-47 code such as en or zh")
    scenes: list[Scene] = Field(min_length=1)
    # the cast and style bible (optional: scripts written before it existed still load)
    characters: list[Character] = Field(default_factory=list, max_length=4,
                                        description="The named recurring characters (none for a film without people)")
    setting: str = Field(default="", description="Where the film takes place, in English, one phrase")
    palette: str = Field(default="", description="The film's colour palette and light, in English, one phrase")

    @model_validator(mode="after")
    def _indexes_in_order(self) -> Script:
        expected = list(range(1, len(self.scenes) + 1))
        if [s.index for s in self.scenes] != expected:
            raise ValueError(f"scenes must be numbered {expected}, got {[s.index for s in self.scenes]}")
        return self


class Chapter(BaseModel):
    start: str = Field(pattern=r"^\d{1,2}:\d{2}$", description="mm:ss")
    title: str = Field(min_length=1)


class SeoDraft(BaseModel):
    """What the SEO agent writes (its answer's schema: the search fields below are never the model's to invent)."""

    title: str = Field(min_length=1, max_length=100)
    description: str = Field(min_length=1)
    tags: list[str] = Field(min_length=1)
    hashtags: list[str] = Field(min_length=1)
    chapters: list[Chapter] = Field(default_factory=list)

    @field_validator("hashtags")
    @classmethod
    def _hash_prefixed(cls, tags: list[str]) -> list[str]:
        return [t if t.startswith("#") else f"#{t}" for t in (t.strip().replace(" ", "") for t in tags) if t]


class SearchSource(BaseModel):
    """A web page Google Search grounded the SEO research on (groundingMetadata.groundingChunks[].web)."""

    uri: str
    title: str = ""


class SeoPackage(SeoDraft):
    """seo.json: the agent's draft, plus what the grounding search found (reelcrew.grounding) when it ran.
    The search fields are optional, so files written before them (or without grounding) still load."""

    search_queries: list[str] = Field(default_factory=list, description="what Google Search was asked")
    sources: list[SearchSource] = Field(default_factory=list, description="the pages the research came from")
    grounding: str = Field(default="", description="why there are no sources when grounding was on (a failure, "
                           "the mock writers), else empty")


class FirstFrame(BaseModel):
    """The picture a clip starts from (continuity `last_frame`: the last frame of the production's previous good
    clip). Its content hash is part of the request, so of the clip key; the path is where this machine keeps it."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    path: str  # a PNG beside the clips (clips/clip-NN.first.png), re-made from `from_key`'s file when missing
    from_key: str  # the clip whose last frame it is
    from_index: int = Field(ge=1)
    mime_type: str = "image/png"


class VideoPrompt(BaseModel):
    index: int = Field(ge=1)
    scene_index: int = Field(ge=1)
    prompt: str = Field(min_length=1)
    negative_prompt: str = ""
    duration: int = 8
    aspect_ratio: Aspect = "16:9"
    resolution: Resolution = "720p"
    seed: int | None = Field(default=None, ge=0, le=4294967295)
    subtitle: str = ""
    variant: int = Field(default=0, ge=0, description="another take of the same request: a new key, a new clip")
    # set by the pipeline, never by the writers (hidden from the Maker's JSON schema): image-to-video's first frame
    first_frame: SkipJsonSchema[FirstFrame | None] = None

    def check_against(self, model: str, backend: str | None = None) -> VideoPrompt:
        """Refuse what the Veo model would refuse (limits from the backend registry), naming the field."""
        from reelcrew.video.registry import UnknownModel, model_limits

        try:
            limits = model_limits(model, backend)
        except UnknownModel as exc:
            raise ValueError(str(exc)) from None
        problems = []
        if self.duration not in limits.durations:
            problems.append(f"duration={self.duration} (allowed: {', '.join(map(str, limits.durations))} s)")
        if self.aspect_ratio not in limits.aspects:
            problems.append(f"aspect_ratio={self.aspect_ratio} (allowed: {', '.join(limits.aspects)})")
        if self.resolution not in limits.resolutions:
            problems.append(f"resolution={self.resolution} (allowed: {', '.join(limits.resolutions)})")
        elif self.resolution != "720p" and self.duration != limits.full_hd_requires:
            problems.append(f"resolution={self.resolution} needs duration={limits.full_hd_requires}, "
                            f"got {self.duration}")
        if problems:
            raise ValueError(f"prompt {self.index} is invalid for {model}: " + "; ".join(problems))
        return self

    def clip_key(self, model: str, reference_images: tuple[str, ...] = (), *, audio: bool = True,
                 enhance_prompt: bool | None = None, sample_count: int = 1, rehearsal: bool = False,
                 person_generation: str | None = None, source_video: str | None = None) -> str:
        """The natural key of the clip this prompt pays for: same key, same clip, paid once.

        It covers everything that changes the output. Fields added after ledgers existed (variant, audio,
        prompt enhancement, sample count, rehearsal) enter the hash only when they differ from their default,
        so every key already in a ledger stays the same. A rehearsal (the mock backend) is another request
        than the paid one: a mock clip never stands in for a real one."""
        payload: dict[str, object] = {
            "model": model,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "duration": self.duration,
            "aspect": self.aspect_ratio,
            "resolution": self.resolution,
            "seed": self.seed,
            "reference_images": list(reference_images),
        }
        added = {"variant": (self.variant, 0), "audio": (audio, True), "enhance_prompt": (enhance_prompt, None),
                 "sample_count": (sample_count, 1), "rehearsal": (rehearsal, False),
                 "person_generation": (person_generation, None),
                 "first_frame": (self.first_frame.sha256 if self.first_frame else None, None),
                 "source_video": (source_video, None)}  # continuity extend: `extend:<the extended clip's key>`
        payload.update({name: value for name, (value, default) in added.items() if value != default})
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


class RewrittenPrompt(BaseModel):
    """The Maker's answer when Veo's safety filter refused a prompt (reelcrew.rephrase): the same scene, new words."""

    prompt: str = Field(min_length=1)


class PromptList(BaseModel):
    """The Maker's answer: one prompt per scene."""

    prompts: list[VideoPrompt] = Field(min_length=1)


class ClipStatus(str, Enum):  # noqa: UP042 - StrEnum would change str()/format() of members stored and printed
    pending = "pending"
    submitting = "submitting"  # intent committed, HTTP submit under way
    submitted = "submitted"  # receipt (operation name) committed: poll, never resubmit
    downloading = "downloading"  # Veo is done with it (no longer counts against VEO3_MAX_CONCURRENT)
    done = "done"
    filtered = "filtered"  # safety filter: not charged, not retried automatically
    failed = "failed"
    paused = "paused"  # daily quota or a spend cap: resumable
    ambiguous = "ambiguous"  # submit outcome unknown: Veo may have accepted (and charged) it


class VideoClip(BaseModel):
    model_config = ConfigDict(use_enum_values=False)

    key: str
    production_id: str
    index: int
    model: str
    prompt: VideoPrompt
    status: ClipStatus = ClipStatus.pending
    operation_name: str | None = None
    video_uri: str | None = None
    path: str | None = None
    sha256: str | None = None
    duration: float | None = None
    retries: int = 0
    error: str | None = None
    cost_usd: float = 0.0
    possible_duplicate: bool = False
    # the claim: who works on it now (`host:pid:random`), until when, and when its receipt was taken
    lease_owner: str | None = None
    lease_until: float = 0.0
    submitted_at: float | None = None
    artifact: str | None = None  # where its bytes live for every worker: `s3://…` or the local path (schema 12)
    qc: dict | None = None  # the quality check of its file (reelcrew.video.qc): None until checked


class ProductionStatus(str, Enum):  # noqa: UP042 - StrEnum would change str()/format() of members stored and printed
    """DESIGN.md's one list of production status names (the CLI's --json, the API, events and alerts use them).

    `interrupted` is not stored: it is derived for display when the owner of a `running` production is dead."""

    queued = "queued"  # planned, not started (ledgers before schema 5 said `pending`)
    running = "running"
    awaiting_approval = "awaiting_approval"  # the estimate was not approved (no --yes, or over --budget-usd)
    paused = "paused"  # quota, budget or a stop: resumable
    done = "done"
    incomplete = "incomplete"  # a final was made with a scene missing
    failed = "failed"  # with the stage and the cause
    cancelled = "cancelled"


TERMINAL_STATUSES = frozenset({ProductionStatus.done, ProductionStatus.incomplete, ProductionStatus.failed,
                               ProductionStatus.cancelled})
STAGE_NAMES = ("script", "seo", "prompts", "clips", "final")


class Production(BaseModel):
    id: str
    topic: str
    language: str
    scenes: int
    aspect_ratio: Aspect
    style: str
    status: ProductionStatus = ProductionStatus.queued
    failed_stage: str | None = None
    error: str | None = None
    folder: str | None = None  # where its files are written (set by the first process that claims it)
    # the rest of its identity and its mode (reelcrew.identity); None in a row from before they were recorded
    resolution: Resolution | None = None
    clip_seconds: int | None = None
    model: str | None = None  # the Veo model
    writers: Literal["mock", "gemini"] | None = None
    backend: Literal["mock", "gemini", "vertex"] | None = None
    continuity: Literal["none", "last_frame", "references", "extend"] | None = None  # how its clips hold together
