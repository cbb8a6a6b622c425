"""What a production is: everything that changes its clips, and the mode it is made in.

A production's id is a hash of its identity: the topic and the settings that change what the writers write or
what Veo makes (language, scenes, aspect, style, resolution, clip length, model, a rehearsal's mock parts, and
continuity once it exists). Change one and the same command makes a new production, whose clips are new
requests; a clip whose request did not change is still reused by its key (`VideoPrompt.clip_key`).

The identity and the mode (writers: mock or Gemini; Veo backend: mock, Gemini API or Vertex AI) are recorded
in the production's ledger row, and every later run of it (resume, retry, assemble) uses them, not whatever the
environment says today: its clips' operations live on the backend that made them, and its prompts were written
for its resolution and clip length.

Ids stay as they were for the settings every production had before these fields existed (LEGACY): a field
enters the hash only when it differs from that value, so older ledgers keep resolving.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from pydantic import BaseModel

from reelcrew.errors import InputError

# The values every production id had before the field entered the hash; never change them (ids would move).
LEGACY: dict[str, Any] = {"resolution": "720p", "clip_seconds": 8, "model": "veo-3.1-fast-generate-001",
                          "rehearsal": None, "continuity": None, "references": None}
BACKEND_NAMES = {"mock": "the mock (offline rehearsal)", "gemini": "the Gemini API", "vertex": "Vertex AI"}


def production_id(topic: str, language: str, scenes: int, aspect: str, style: str, **more: Any) -> str:
    """Stable for the same request, so running the same command again resumes it. From user input, never LLM text.

    `more`: resolution, clip_seconds, model, rehearsal, continuity, references (the hash of a production's
    continuity reference images, video.continuity_refs) (the fields of LEGACY); each enters the hash
    only when it differs from its LEGACY value."""
    unknown = set(more) - set(LEGACY)
    if unknown:
        raise TypeError(f"not part of a production's identity: {sorted(unknown)}")
    text = f"{topic}\x1f{language}\x1f{scenes}\x1f{aspect}\x1f{style}"
    text += "".join(f"\x1f{name}={more[name]}" for name in LEGACY if name in more and more[name] != LEGACY[name])
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", topic.lower()).strip("-")[:32].strip("-")
    return f"{slug}-{digest}" if slug else f"p-{digest}"


class ProductionMode(BaseModel):
    """Which writers and which Veo backend a production is made with."""

    writers: Literal["mock", "gemini"]
    backend: Literal["mock", "gemini", "vertex"]

    @classmethod
    def of(cls, settings: Any) -> ProductionMode:
        from reelcrew.video.registry import backend_name

        return cls(writers="mock" if settings.reelcrew_llm == "mock" else "gemini", backend=backend_name(settings))

    @property
    def rehearsal(self) -> str | None:
        """The mock parts, for the identity: a rehearsal is another request than the real thing."""
        parts = [name for name, mock in (("writers", self.writers == "mock"), ("veo", self.backend == "mock")) if mock]
        return "+".join(parts) or None

    def describe(self) -> str:
        if self.writers == "mock" and self.backend == "mock":
            return "mock mode"
        return f"real mode (Veo on {BACKEND_NAMES[self.backend]}, {self.writers} writers)"

    def apply(self, settings: Any) -> dict[str, Any]:
        """The settings' fields that put them in this mode."""
        update: dict[str, Any] = {"reelcrew_llm": self.writers, "veo3_mock_mode": self.backend == "mock"}
        if self.backend != "mock":
            update["google_genai_use_vertexai"] = self.backend == "vertex"
        return update


def identity_fields(settings: Any) -> dict[str, Any]:
    """What a production made with these settings records besides topic, language, scenes, aspect and style."""
    mode = ProductionMode.of(settings)
    return {"resolution": settings.resolution, "clip_seconds": settings.clip_seconds, "model": settings.veo3_model,
            "writers": mode.writers, "backend": mode.backend, "continuity": getattr(settings, "continuity", "none")}


def continuity_in_id(settings: Any) -> str | None:
    """The continuity mode as it enters the production id: `none` (every production before the mode existed) is
    LEGACY's None, so those ids do not move."""
    mode = getattr(settings, "continuity", "none")
    return None if mode == "none" else mode


def recorded_mode(prod: Any) -> ProductionMode | None:
    """The mode recorded for the production (None for a production from before modes were recorded)."""
    if prod.writers and prod.backend:
        return ProductionMode(writers=prod.writers, backend=prod.backend)
    return None


def settings_for(settings: Any, prod: Any) -> Any:
    """These settings, with the production's recorded identity and mode in place of today's values."""
    update: dict[str, Any] = {"scenes": prod.scenes, "aspect_ratio": prod.aspect_ratio, "style": prod.style}
    for field, name in (("resolution", "resolution"), ("clip_seconds", "clip_seconds"), ("model", "veo3_model")):
        value = getattr(prod, field, None)
        if value is not None:
            update[name] = value
    mode = recorded_mode(prod)
    if mode is not None:
        update.update(mode.apply(settings))
    continuity = getattr(prod, "continuity", None)
    if continuity is not None:
        from reelcrew.continuity import IN_ORDER

        update["continuity"] = continuity
        if continuity in IN_ORDER:  # its clips one after another (each waits for the previous clip's end)
            update["reelcrew_clips_in_order"] = True
    return settings.model_copy(update=update)


def mode_conflict(settings: Any, prod: Any) -> str | None:
    """Why these settings cannot work on the production, or None: mock Veo cannot finish a production whose
    clips are real (paid) requests. The other way round is no conflict: a mock production simply stays mock."""
    mode = recorded_mode(prod)
    if mode is None or mode.backend == "mock" or not settings.veo3_mock_mode:
        return None
    return f"production {prod.id} was made in {mode.describe()}; mock mode cannot finish it"


MODE_FIX = ("run it without --mock (and without VEO3_MOCK_MODE=true): every production is resumed, retried and "
            "re-cut in the mode it was made in")


def require_same_mode(settings: Any, prod: Any) -> None:
    """`retry` and `assemble` of one production: refuse (exit 2, nothing changed) a mode it was not made in."""
    conflict = mode_conflict(settings, prod)
    if conflict:
        raise InputError(conflict, MODE_FIX)
