"""The SEO crew: Script → SeoPackage (title, description, tags, hashtags, chapters)."""

from __future__ import annotations

from pathlib import Path

from crewai import BaseLLM

from reelcrew.crews.base import CrewResult, CrewSpec, run_crew
from reelcrew.models import Script, SeoDraft, SeoPackage

YOUTUBE_DESCRIPTION_MAX = 5000  # characters; the title's 100 is in SeoPackage's schema (max_length)
NO_SEARCH = "(no web search was made for this video: rely on the script and the topic)"


def youtube_limits(seo: SeoDraft, inputs: dict) -> None:
    """YouTube refuses a longer description: the answer goes back to the writer (the crew's repair loop), which
    is told the length, rather than being cut mid-sentence."""
    if len(seo.description) > YOUTUBE_DESCRIPTION_MAX:
        raise ValueError(f"description is {len(seo.description)} characters; YouTube allows at most "
                         f"{YOUTUBE_DESCRIPTION_MAX}: shorten it")


# the agent answers a SeoDraft: the search fields of seo.json come from Google's grounding metadata, never the model
SPEC = CrewSpec("seo", "seo", "write_seo", SeoDraft, youtube_limits)


def write_seo(llm: BaseLLM, inputs: dict, script: Script, crews_dir: Path,
              max_repairs: int = 2, search_context: str = "") -> CrewResult[SeoPackage]:
    """`search_context`: what the grounding search found (reelcrew.grounding), for the task's {search_context}."""
    result = run_crew(SPEC, llm, {**inputs, "script_json": script.model_dump_json(),
                                  "search_context": search_context or NO_SEARCH}, crews_dir, max_repairs)
    return CrewResult(SeoPackage.model_validate(result.value.model_dump()), result.answers, result.errors)
