"""SEO grounded in Google Search: one Gemini call with the search tool, before the SEO agent writes.

Why a separate, plain call (not the SEO agent's own request): the agent answers in JSON mode against a schema
(crews/base.py). Gemini 3 accepts the search tool together with a response schema, Gemini 2.x refuses it
("Tool use with a response mime type: 'application/json' is unsupported"), and CrewAI 1.15's provider sends no
built-in tools at all. One plain `generate_content` with `types.Tool(google_search=types.GoogleSearch())` through
google-genai (the project's `genai_client`: Gemini API key, Vertex project or express, and the base URLs) works
on every model, keeps the agent's schema and repair loop as they are, and hands back `groundingMetadata` (the
queries Google ran, the pages it read) untouched, which seo.json records. Its answer (related searches and
hashtags, in plain text) goes into the agent's task as {search_context}.

Money: the call waits at the writers' rate gate; its tokens (search results read count as input) and its search
fee (`prices.<model>.search_per_query` per query Google ran on Gemini 3.x, or `search_per_prompt` per grounded
request on 2.x) are one `grounding` row in the cost ledger. Only what cannot have been charged is tried again (a
429, a 5xx, a refused connection); a request sent and never answered is not resent. A failure (an error, a
per-day search quota, an answer with nothing grounded) never fails the production: the SEO is written without
it and the reason is kept.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from reelcrew.errors import ReelcrewError
from reelcrew.models import SearchSource
from reelcrew.settings import Settings
from reelcrew.writer_quota import WriterQuota, WritersPaused

log = logging.getLogger("reelcrew.grounding")
ATTEMPTS = 3  # a per-minute 429, a 5xx or a refused connection is tried again (each time through the rate gate)
TIMEOUT_MS = 120_000  # one grounded answer (searches and thinking) takes seconds; a hung one must not hold the SEO
MAX_SOURCES = 10

PROMPT = """You research search demand for a short video before its title, description, tags and hashtags are
written. Use Google Search (at most 3 searches) to find what people search for right now about this topic,
in {language_name}:

{topic}

Answer in plain text, in {language_name}, with three short sections:
1. Related searches: 5 to 10 queries people type about this topic now.
2. Hashtags: 5 to 10 hashtags in use on YouTube Shorts, TikTok or Douyin for it.
3. Angles: one line on what is current or trending about it, if anything.
"""


class GroundingFailed(Exception):
    """The search call gave nothing usable: the SEO is written without it (the reason goes in seo.json)."""


@dataclass
class Grounding:
    """What the search found: the model's notes for the SEO agent and Google's own metadata."""

    text: str
    queries: list[str] = field(default_factory=list)
    sources: list[SearchSource] = field(default_factory=list)
    usd: float = 0.0

    def context(self) -> str:
        """The agent's {search_context}: the notes and the titles of the pages they came from."""
        read = "\n".join(f"- {s.title or s.uri}" for s in self.sources)
        return self.text.strip() + (f"\n\nPages read:\n{read}" if read else "")


def search_fee(settings: Settings, model: str, queries: int) -> float:
    """USD for one grounded request that ran `queries` searches (0 when config/pipeline.yaml names no price)."""
    entry = settings.prices.get(model) or {}
    per_query, per_prompt = float(entry.get("search_per_query", 0.0)), float(entry.get("search_per_prompt", 0.0))
    return queries * per_query + (per_prompt if queries else 0.0)


def search_for_seo(settings: Settings, quota: WriterQuota, topic: str, language_name: str) -> Grounding:
    """One grounded Gemini call; raises GroundingFailed (the production goes on) or WritersPaused (the writers'
    breaker is open: the SEO agent could not write either, so the production waits like any writer)."""
    import httpx
    from google.genai import errors, types

    from reelcrew.google_auth import genai_client
    from reelcrew.video.quota import classify_429, jitter

    client = genai_client(settings, types.HttpOptions(timeout=TIMEOUT_MS))
    model = settings.gemini_model_id
    config = types.GenerateContentConfig(tools=[types.Tool(google_search=types.GoogleSearch())])
    prompt = PROMPT.format(topic=topic, language_name=language_name)
    last = ""
    for attempt in range(1, ATTEMPTS + 1):
        quota.before_call()  # WritersPaused propagates
        try:
            response = client.models.generate_content(model=model, contents=prompt, config=config)
        except errors.APIError as exc:
            last = f"Gemini answered {exc.code} {exc.status or ''}: {exc.message or ''}".strip()
            if exc.code == 429:
                signal = classify_429(exc.details)
                if signal.kind == "day":  # the search quota of the day: not the writers' (they go on)
                    raise GroundingFailed(f"the day's Google Search grounding quota is used up ({last})") from None
                wait = signal.retry_after if signal.retry_after is not None else settings.veo3_retry_wait_base
            elif exc.code >= 500:
                wait = settings.veo3_retry_wait_base
            else:  # 400 (a model without the tool, a bad key ...): trying again changes nothing
                raise GroundingFailed(last) from None
            log.info("grounding attempt %d of %d: %s", attempt, ATTEMPTS, last)
            if attempt < ATTEMPTS:
                time.sleep(jitter(min(wait, 60.0)))
            continue
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing was sent: safe to try again
            last = f"Gemini could not be reached: {type(exc).__name__}: {exc}"
            if attempt < ATTEMPTS:
                time.sleep(jitter(min(settings.veo3_retry_wait_base, 60.0)))
            continue
        except httpx.TransportError as exc:  # sent, then no answer: Google may have run (and billed) it, never resent
            raise GroundingFailed(f"no answer ({type(exc).__name__}); the search may have been charged, "
                                  "so it is not sent again") from None
        return _answered(settings, quota, model, response)
    raise GroundingFailed(f"{ATTEMPTS} attempts failed; the last: {last}")


def _answered(settings: Settings, quota: WriterQuota, model: str, response) -> Grounding:
    """Price the answer (recorded even when it grounds nothing: it was paid), then read its metadata."""
    usage = response.usage_metadata
    tokens_in = (usage.prompt_token_count or 0) + (usage.tool_use_prompt_token_count or 0) if usage else 0
    tokens_out = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0) if usage else 0
    candidate = response.candidates[0] if response.candidates else None
    meta = candidate.grounding_metadata if candidate is not None else None
    # Google bills unique, non-empty queries (empty strings do appear in webSearchQueries)
    queries = list(dict.fromkeys(q.strip() for q in (meta.web_search_queries or []) if q and q.strip())) if meta else []
    sources: list[SearchSource] = []
    for chunk in (meta.grounding_chunks or []) if meta else []:
        web = chunk.web
        if web is not None and web.uri and all(s.uri != web.uri for s in sources):
            sources.append(SearchSource(uri=web.uri, title=web.title or ""))
    usd = quota.searched(model, tokens_in, tokens_out, search_fee(settings, model, len(queries)))
    text = (response.text or "").strip()
    if not text:
        raise GroundingFailed("the grounded answer was empty")
    if not queries:
        raise GroundingFailed("Gemini answered without searching (no web search queries in groundingMetadata)")
    return Grounding(text=text, queries=queries, sources=sources[:MAX_SOURCES], usd=usd)


def write_seo(pipeline, prod, inputs: dict, script):
    """The "seo" stage (pipeline.Pipeline.write): the search first when SEO_GROUNDING asks for it, then the agent;
    seo.json gets the queries and sources, or why there are none. A search already paid for this production
    (kept in the ledger as its `grounding` stage) is reused when the SEO is written again."""
    import json

    from reelcrew import crews
    from reelcrew.crews.base import CrewResult

    s, store = pipeline.settings, pipeline.store
    found: Grounding | None = None
    note = ""
    saved = store.stage(prod.id, "grounding")
    if not s.seo_grounding:
        pass
    elif saved is not None:
        data = json.loads(saved)
        found = Grounding(data["text"], data["queries"], [SearchSource(**x) for x in data["sources"]], data["usd"])
    elif s.mock_llm:
        note = "not searched: the mock writers never call Google Search (SEO_GROUNDING needs REELCREW_LLM=gemini)"
        store.log("grounding_skipped", note, prod.id, stage="seo")
    else:
        pipeline.llm()  # the writers' quota: the search waits at their gate and lands in their cost ledger
        try:
            found = search_for_seo(s, pipeline.writer_quota, prod.topic, inputs["language_name"])
        except Exception as exc:  # never a failed production for the search (a ReelcrewError still stops it)
            if isinstance(exc, ReelcrewError):
                raise
            reason = str(exc) if isinstance(exc, GroundingFailed) else f"{type(exc).__name__}: {exc}"
            note = f"grounding failed, the SEO was written without search: {reason}"
            log.warning("%s: %s", prod.id, note)
            store.log("grounding_failed", note, prod.id, stage="seo")
        else:
            store.save_stage(prod.id, "grounding", {"text": found.text, "queries": found.queries, "usd": found.usd,
                                                    "sources": [x.model_dump() for x in found.sources]}, 1)
            store.log("grounded", f"{len(found.queries)} search queries, {len(found.sources)} sources, "
                      f"${found.usd:.4f}", prod.id, stage="seo")
    result = crews.write_seo(pipeline.llm(), inputs, script, s.crews_dir, s.llm_max_repairs,
                             found.context() if found else "")
    extra = {"search_queries": found.queries, "sources": found.sources} if found else {"grounding": note}
    return CrewResult(result.value.model_copy(update=extra), result.answers, result.errors)


__all__ = ["Grounding", "GroundingFailed", "WritersPaused", "search_fee", "search_for_seo", "write_seo"]
