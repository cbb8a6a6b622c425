"""The SEO crew: Script → SeoPackage (title, description, tags, hashtags, chapters)."""

from __future__ import annotations

from pathlib import Path

from crewai import BaseLLM

from reelcrew.crews.base import CrewResult, CrewSpec, run_crew
from reelcrew.models import Script, SeoPackage

SPEC = CrewSpec("seo", "seo", "write_seo", SeoPackage)


def write_seo(llm: BaseLLM, inputs: dict, script: Script, crews_dir: Path,
              max_repairs: int = 2) -> CrewResult[SeoPackage]:
    return run_crew(SPEC, llm, {**inputs, "script_json": script.model_dump_json()}, crews_dir, max_repairs)
