"""The writers' share of the Google quota: the same gates as Veo, in their own buckets, and their cost.

Each Gemini call of the writers waits at a rate gate beside the ledger (bucket "writers", GEMINI_RPM),
passes a breaker of its own (quota_state row "writers"), and on a 429 either waits out a per-minute quota
(RetryInfo's delay) or pauses the production until midnight Pacific for a per-day one. The tokens of every
answered call land in the cost ledger, priced from `prices.<model>` in config/pipeline.yaml
(`input_per_mtok`, `output_per_mtok`; thinking tokens are billed as output).
"""

from __future__ import annotations

import logging
import time

from reelcrew.errors import ReelcrewError
from reelcrew.settings import Settings
from reelcrew.store import Store
from reelcrew.video.quota import Breaker, QuotaPaused, RateGate, jitter, next_quota_reset

log = logging.getLogger("reelcrew.writers")
WRITER_TOKENS_PER_PRODUCTION = (6_000, 3_000)  # input, output: three crews, a repair turn each (an estimate)
# One Maker rewrite of a filtered prompt (crews/maker rephrase_prompt): the request measures about 2,600 characters
# with its schema (~650 tokens at 4 characters a token; bench/bench_writer_requests.py), sent up to 3 times
# (LLM_MAX_REPAIRS 2); the answer ~150 tokens plus Gemini 3's thinking. VEO3_REPHRASE_ATTEMPTS per clip at most.
REWRITE_TOKENS = (2_000, 1_500)
# The SEO's grounding call (reelcrew.grounding): a short prompt, the search results it reads (tool-use tokens,
# billed as input) and a thinking answer; searches: the prompt asks for at most 3, Gemini may run more.
GROUNDING_TOKENS = (4_000, 1_500)
GROUNDING_QUERIES = 5


class WritersPaused(ReelcrewError):
    """The writers' daily Gemini quota is used up: the production waits for midnight Pacific."""


def token_price(settings: Settings, model: str) -> tuple[float, float]:
    """USD per million input and output tokens for `model` (0, 0 when config/pipeline.yaml names no price)."""
    entry = settings.prices.get(model) or {}
    return float(entry.get("input_per_mtok", 0.0)), float(entry.get("output_per_mtok", 0.0))


def writer_estimate_usd(settings: Settings, productions: int) -> float:
    """What the writers will likely cost for `productions` not yet written (shown with the clips' estimate)."""
    if settings.mock_llm:
        return 0.0
    per_in, per_out = token_price(settings, settings.gemini_model_id)
    tokens_in, tokens_out = WRITER_TOKENS_PER_PRODUCTION
    return productions * (tokens_in * per_in + tokens_out * per_out) / 1e6


def rewrite_estimate_usd(settings: Settings, clips: int) -> float:
    """The most the Maker's rewrites of filtered prompts can cost for `clips` clips still to make (free with the
    mock writers). A filtered clip itself is free: only the writer's tokens are money."""
    if settings.mock_llm or not settings.veo3_rephrase_attempts:
        return 0.0
    per_in, per_out = token_price(settings, settings.gemini_model_id)
    tokens_in, tokens_out = REWRITE_TOKENS
    return clips * settings.veo3_rephrase_attempts * (tokens_in * per_in + tokens_out * per_out) / 1e6


def grounding_estimate_usd(settings: Settings, productions: int) -> float:
    """The SEO grounding call for `productions` whose SEO is not written yet (SEO_GROUNDING; never on the mock)."""
    from reelcrew.grounding import search_fee

    if settings.mock_llm or not settings.seo_grounding:
        return 0.0
    model = settings.gemini_model_id
    per_in, per_out = token_price(settings, model)
    tokens_in, tokens_out = GROUNDING_TOKENS
    return productions * ((tokens_in * per_in + tokens_out * per_out) / 1e6
                          + search_fee(settings, model, GROUNDING_QUERIES))


class WriterQuota:
    """What the provider calls around each request (gemini_llm.RepairableGemini)."""

    def __init__(self, store: Store, settings: Settings):
        self.store, self.settings = store, settings
        self.gate = RateGate(store, settings.gemini_rpm, 0, 60.0, name="writers", broker=settings.reelcrew_broker)
        self.breaker = Breaker(store, settings, name="writers")
        self.production_id: str | None = None  # set by the pipeline before each crew

    def before_call(self) -> None:
        """Wait for the breaker and the rate gate; a paused day raises WritersPaused."""
        while True:
            try:
                wait = self.breaker.before_submit()
            except QuotaPaused as paused:
                raise WritersPaused(f"the writers' Gemini quota is paused: {paused}",
                                    "run `reelcrew resume` after the quota resets (midnight Pacific time)") from None
            if wait <= 0:
                break
            time.sleep(wait)
        self.gate.acquire()

    def after_429(self, window: str, retry_after: float | None) -> None:
        """Per-minute: wait (RetryInfo's delay, else back-off). Per-day: pause and raise WritersPaused."""
        if window == "day":
            until = next_quota_reset(time.time(), self.settings.veo3_quota_reset_interval)
            self.breaker.pause_day(until, "Gemini answered the writers 429 with a per-day QuotaFailure")
            raise WritersPaused(f"the writers' daily Gemini quota is used up; paused until "
                                f"{time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(until))}",
                                "run `reelcrew resume` after the quota resets (midnight Pacific time)")
        self.store.log("quota", f"writers 429 {window}, retry in {retry_after or 'back-off'}", self.production_id,
                       stage="writers")
        if window == "minute" and retry_after is not None:
            time.sleep(jitter(retry_after))
        else:
            self.breaker.failure("writers: bare 429")
            time.sleep(jitter(min(self.settings.veo3_retry_wait_base, 60)))

    def answered(self, model: str, input_tokens: int, output_tokens: int) -> None:
        self.breaker.success()
        per_in, per_out = token_price(self.settings, model)
        usd = (input_tokens * per_in + output_tokens * per_out) / 1e6
        self.store.record_llm_cost(self.production_id, model, input_tokens, output_tokens, usd)

    def searched(self, model: str, input_tokens: int, output_tokens: int, search_usd: float) -> float:
        """The SEO's grounding call answered: its tokens and search fee, one `grounding` row; returns the USD."""
        self.breaker.success()
        per_in, per_out = token_price(self.settings, model)
        usd = (input_tokens * per_in + output_tokens * per_out) / 1e6 + search_usd
        self.store.record_llm_cost(self.production_id, model, input_tokens, output_tokens, usd, kind="grounding")
        return usd
