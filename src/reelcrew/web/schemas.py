"""What the API accepts: pydantic models whose limits are the request limits (topic length, topics per request).

A request that breaks one is answered 422 naming the field and the fix (`reelcrew.web.errors`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TOPICS = 20
MAX_TOPIC_CHARS = 200
MAX_PROMPT_CHARS = 2000
Stage = Literal["script", "seo", "prompts", "clips", "final"]


class CreateRequest(BaseModel):
    """`POST /api/productions`: the CLI's `run` options. `hold` stops even a free (mock) production after its
    prompts for review; a paid one stops there anyway unless `auto_approve` (like `--yes`, capped by
    `budget_usd`)."""

    model_config = ConfigDict(extra="forbid")

    topics: list[str] = Field(min_length=1, max_length=MAX_TOPICS)
    scenes: int | None = Field(None, ge=1, le=30)
    aspect_ratio: Literal["16:9", "9:16"] | None = None
    language: str | None = Field(None, pattern=r"^(auto|[a-z]{2,3}(-[A-Za-z]{2,4})?)$")
    continuity: Literal["none", "last_frame", "references", "extend"] | None = None  # `--continuity`
    mock: bool = False
    until: Stage = "final"
    budget_usd: float | None = Field(None, ge=0)
    auto_approve: bool = False
    hold: bool = False

    @field_validator("topics")
    @classmethod
    def _topics_fit(cls, topics: list[str]) -> list[str]:
        cleaned = [t.strip() for t in topics]
        for number, topic in enumerate(cleaned):
            if not topic:
                raise ValueError(f"topic {number + 1} is empty")
            if len(topic) > MAX_TOPIC_CHARS:
                raise ValueError(f"topic {number + 1} has {len(topic)} characters, over {MAX_TOPIC_CHARS}")
        return list(dict.fromkeys(cleaned))


class PromptEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, min_length=1, max_length=MAX_PROMPT_CHARS)


class AssembleRequest(BaseModel):
    """A re-cut with other subtitle, watermark or transition settings (sections as in config/pipeline.yaml);
    music and logo come from `POST /api/uploads` by id, never as a server path."""

    model_config = ConfigDict(extra="forbid")

    subtitles: dict | None = None
    watermark: dict | None = None
    transitions: dict | None = None
    music_upload: str | None = Field(None, pattern=r"^[0-9a-f]{16,64}\.(mp3|wav|m4a|aac|ogg)$")
    logo_upload: str | None = Field(None, pattern=r"^[0-9a-f]{16,64}\.(png|jpg|jpeg)$")


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Literal["viewer", "operator", "admin"]
    daily_budget_usd: float | None = Field(None, ge=0)
