"""One registry of video backends: the models each one serves, their limits, parameters and prices.

Everything that used to ask "is this the mock?" or "which models exist?" asks here instead: Settings
validates VEO3_MODEL, `VideoPrompt.check_against` refuses what the model would refuse, the generator prices a
clip, the manifest names the backend, and `make_backend` builds it. Prices are defaults in USD per second of
video (Google's published rates, see docs/research veo-api.md); `prices:` in config/pipeline.yaml overrides them.
This module imports nothing of ours, so settings.py and models.py can both read it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("reelcrew.video")


@dataclass(frozen=True)
class ModelLimits:
    """What one Veo model accepts on one backend; a prompt outside these is refused before any spend."""

    durations: tuple[int, ...] = (4, 6, 8)
    aspects: tuple[str, ...] = ("16:9", "9:16")
    resolutions: tuple[str, ...] = ("720p", "1080p")
    full_hd_requires: int = 8  # 1080p is only generated at this duration
    has_audio: bool = True
    accepts: frozenset[str] = frozenset()  # optional request fields this backend sends (seed, generate_audio ...)
    # image-to-video (a first frame, continuity last_frame): the clip lengths it takes; () = no first frame.
    # Veo 3.1 (standard, fast, lite) takes a first frame at 4, 6 and 8 s on both backends (veo-api.md 5.2: only a
    # last frame, reference images, extension and 1080p need 8 s)
    first_frame_durations: tuple[int, ...] = (4, 6, 8)
    price_per_second: Mapping[str, float] = field(default_factory=dict)  # by resolution; {} = free
    # videos one request may ask for (`number_of_videos`, wire `sampleCount`): each one is billed
    max_samples: int = 1
    continuity: frozenset[str] = frozenset({"none", "last_frame", "references", "extend"})  # modes it takes


@dataclass(frozen=True)
class BackendSpec:
    name: str
    description: str
    models: Mapping[str, ModelLimits]
    paid: bool = True  # False: rehearsals (no rate gate, no confirmation, no cost)
    extend_input_seconds: float = 141.0  # continuity extend: the longest video the backend extends (Gemini API 141 s)


# USD per second, by resolution (veo-api.md section 5.5: Google's pricing pages, Nov 2026). `<res>_video_only`:
# Vertex AI's lower price for silent clips (generate_audio false); standard's is unverified and Lite's inferred.
VIDEO_ONLY = "_video_only"
_PRICES = {
    "veo-3.1-generate": {"720p": 0.40, "1080p": 0.40, "720p_video_only": 0.20, "1080p_video_only": 0.20},
    "veo-3.1-fast-generate": {"720p": 0.10, "1080p": 0.12, "720p_video_only": 0.08, "1080p_video_only": 0.10},
    "veo-3.1-lite-generate": {"720p": 0.05, "1080p": 0.08, "720p_video_only": 0.03, "1080p_video_only": 0.05},
}
# Optional request fields each backend sends. The Gemini API (google-genai 1.65) refuses seed, generate_audio
# and output_gcs_uri before sending; it takes enhance_prompt and person_generation (allow_all for text-to-video).
_GEMINI_FIELDS = frozenset({"enhance_prompt", "person_generation"})
_VERTEX_FIELDS = frozenset({"seed", "generate_audio", "output_gcs_uri", "enhance_prompt", "person_generation"})
_MOCK_FIELDS = frozenset({"seed", "generate_audio", "enhance_prompt", "person_generation"})


# Continuity modes per model (Gemini API "Veo model features", Vertex model cards, November 2026): Veo 3.1 Lite
# makes neither reference-image videos nor extensions.
_LITE_CONTINUITY = frozenset({"none", "last_frame"})


def _family(accepts: frozenset[str], priced: bool = True, max_samples: int = 1) -> dict[str, ModelLimits]:
    every = ModelLimits().continuity
    return {f"{base}-{suffix}": ModelLimits(accepts=accepts, price_per_second=prices if priced else {},
                                            max_samples=max_samples,
                                            continuity=_LITE_CONTINUITY if "lite" in base else every)
            for base, prices in _PRICES.items() for suffix in ("001", "preview")}


# Samples per request (veo-api.md 1.2, 5.2): the Gemini API takes 1 for Veo 3.x, Vertex AI up to 4.
BACKENDS: dict[str, BackendSpec] = {
    "gemini": BackendSpec("gemini", "Gemini API (API key)", _family(_GEMINI_FIELDS)),
    # Vertex extends Veo videos of 1 to 30 s ("Extend Veo on Vertex AI-generated videos")
    "vertex": BackendSpec("vertex", "Vertex AI (project credentials)", _family(_VERTEX_FIELDS, max_samples=4),
                          extend_input_seconds=30.0),
    "mock": BackendSpec("mock", "offline rehearsal: real clips, free",
                        _family(_MOCK_FIELDS, priced=False, max_samples=4), paid=False),
}


class UnknownModel(ValueError):
    """A model the chosen backend does not serve; the message lists the ones it does."""


def backend_name(settings: Any) -> str:
    """Which backend these settings select: the mock, Vertex AI, or the Gemini API."""
    if getattr(settings, "veo3_mock_mode", False):
        return "mock"
    return "vertex" if getattr(settings, "google_genai_use_vertexai", False) else "gemini"


def backend_spec(settings_or_name: Any) -> BackendSpec:
    name = settings_or_name if isinstance(settings_or_name, str) else backend_name(settings_or_name)
    return BACKENDS[name]


def known_models(backend: str | None = None) -> list[str]:
    """Every model the backend serves (all backends when None), in registry order."""
    specs = [BACKENDS[backend]] if backend else list(BACKENDS.values())
    return list(dict.fromkeys(model for spec in specs for model in spec.models))


def model_limits(model: str, backend: str | None = None) -> ModelLimits:
    """The model's limits on `backend` (or on the first backend that serves it); UnknownModel otherwise."""
    for spec in [BACKENDS[backend]] if backend else BACKENDS.values():
        if model in spec.models:
            return spec.models[model]
    where = f" on the {backend} backend" if backend else ""
    raise UnknownModel(f"unknown Veo model {model!r}{where}; use one of: {', '.join(known_models(backend))}")


def price_column(settings: Any, model: str) -> str:
    """Which price applies: `video_only` for silent clips where the backend bills them less (Vertex AI with
    generate_audio false), else `audio` (Veo 3 on the Gemini API always makes sound, and is billed so)."""
    silent = not getattr(settings, "veo3_generate_audio", True)
    accepts = model_limits(model, backend_name(settings)).accepts
    return "video_only" if silent and "generate_audio" in accepts else "audio"


_warned_fallbacks: set[str] = set()


def price_per_second(settings: Any, model: str, resolution: str) -> float:
    """USD per second: 0 on a free backend, else `prices:` from config/pipeline.yaml, else the registry default.

    Silent clips on Vertex AI use the `<res>_video_only` column. A price list without it (a config written before
    it existed) falls back to the price with audio, the higher one, so estimates and budgets never count low; a
    warning names the key to add."""
    spec = backend_spec(settings)
    if not spec.paid:
        return 0.0
    configured = (getattr(settings, "prices", None) or {}).get(model)
    by_res = configured or dict(model_limits(model, spec.name).price_per_second)
    with_audio = {k: v for k, v in by_res.items() if not k.endswith(VIDEO_ONLY)}
    if not with_audio:
        from reelcrew.errors import ConfigError

        raise ConfigError(f"no price for {model}", f"add prices.{model}.{resolution} (USD per second) to "
                                                   "config/pipeline.yaml")
    audio_price = with_audio.get(resolution, max(with_audio.values()))
    if price_column(settings, model) == "audio":
        return audio_price
    column = f"{resolution}{VIDEO_ONLY}"
    if column in by_res:
        return by_res[column]
    if f"{model}.{column}" not in _warned_fallbacks:
        _warned_fallbacks.add(f"{model}.{column}")
        log.warning(
            "no video-only price for %s at %s: silent clips are priced with audio (%.2f USD/s); add "
            "prices.%s.%s to config/pipeline.yaml", model, resolution, audio_price, model, column)
    return audio_price


def sample_count(settings: Any) -> int:
    """Videos asked for per clip (VEO3_SAMPLE_COUNT): Veo bills each one, the quality check picks the clip."""
    return int(getattr(settings, "veo3_sample_count", 1) or 1)


# person_generation values a backend takes for text-to-video (Google's "Veo API parameters", November 2026)
PERSON_GENERATION = {"gemini": ("allow_all",), "vertex": ("allow_all", "allow_adult", "dont_allow"),
                     "mock": ("allow_all", "allow_adult", "dont_allow")}


def veo_options(settings: Any) -> dict[str, Any]:
    """The request parameters these settings add to every clip; they change the video, so they enter its key."""
    return {"audio": getattr(settings, "veo3_generate_audio", True),
            "enhance_prompt": getattr(settings, "veo3_enhance_prompt", None),
            "person_generation": getattr(settings, "veo3_person_generation", None),
            "sample_count": sample_count(settings)}


def option_problems(settings: Any) -> list[tuple[str, str, str]]:
    """Request parameters the chosen backend and model would refuse: (setting, problem, advice) each."""
    backend = backend_name(settings)
    limits = model_limits(settings.veo3_model, backend)
    accepts = limits.accepts
    options = veo_options(settings)
    problems = []
    if not options["audio"] and "generate_audio" not in accepts:
        problems.append(("veo3_generate_audio", f"silent clips are not available on the {backend} backend "
                         "(Veo 3 on the Gemini API always makes sound)",
                         "true, or use Vertex AI (GOOGLE_GENAI_USE_VERTEXAI=true) for silent clips"))
    if options["enhance_prompt"] is not None and "enhance_prompt" not in accepts:
        problems.append(("veo3_enhance_prompt", f"enhance_prompt is not sent on the {backend} backend",
                         "leave it unset"))
    if options["sample_count"] > limits.max_samples:
        problems.append(("veo3_sample_count", f"sample_count={options['sample_count']} is refused on the {backend} "
                         f"backend for {settings.veo3_model} (at most {limits.max_samples} video per request)",
                         f"{limits.max_samples}, or use Vertex AI (GOOGLE_GENAI_USE_VERTEXAI=true) for up to 4 "
                         "samples per clip"))
    person = options["person_generation"]
    if person is not None:
        allowed = PERSON_GENERATION.get(backend, ()) if "person_generation" in accepts else ()
        if person not in allowed:
            problems.append(("veo3_person_generation", f"person_generation={person} is refused on the {backend} "
                             "backend for text-to-video", f"one of {', '.join(allowed)}, or leave it unset"
                             if allowed else "leave it unset"))
    return problems
