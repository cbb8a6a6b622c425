"""The SEO crew: Script → SeoPackage (title, description, tags, hashtags, chapters)."""

from __future__ import annotations

from pathlib import Path

from crewai import BaseLLM

from reelcrew.crews.base import CrewResult, CrewSpec, run_crew
from reelcrew.models import Script, SeoPackage

YOUTUBE_DESCRIPTION_MAX = 5000  # characters; the title's 100 is in SeoPackage's schema (max_length)


def youtube_limits(seo: SeoPackage, inputs: dict) -> None:
    """YouTube refuses a longer description: the answer goes back to the writer (the crew's repair loop), which
    is told the length, rather than being cut mid-sentence."""
    if len(seo.description) > YOUTUBE_DESCRIPTION_MAX:
        raise ValueError(f"description is {len(seo.description)} characters; YouTube allows at most "
                         f"{YOUTUBE_DESCRIPTION_MAX}: shorten it")


SPEC = CrewSpec("seo", "seo", "write_seo", SeoPackage, youtube_limits)


def write_seo(llm: BaseLLM, inputs: dict, script: Script, crews_dir: Path,
              max_repairs: int = 2) -> CrewResult[SeoPackage]:
    return run_crew(SPEC, llm, {**inputs, "script_json": script.model_dump_json()}, crews_dir, max_repairs)
