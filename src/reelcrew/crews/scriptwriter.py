"""The Scriptwriter crew: topic → Script."""

from __future__ import annotations

from pathlib import Path

from crewai import BaseLLM

from reelcrew.crews.base import CrewResult, CrewSpec, run_crew
from reelcrew.models import Script


def _check(script: Script, inputs: dict) -> None:
    want = int(inputs["scenes"])
    if len(script.scenes) != want:
        raise ValueError(f"scenes: expected exactly {want} scenes, got {len(script.scenes)}")
    bad = [s.index for s in script.scenes if s.duration != int(inputs["clip_seconds"])]
    if bad:
        raise ValueError(f"scenes {bad}: duration must be {inputs['clip_seconds']}")


SPEC = CrewSpec("scriptwriter", "scriptwriter", "write_script", Script, _check)


def write_script(llm: BaseLLM, inputs: dict, crews_dir: Path, max_repairs: int = 2) -> CrewResult[Script]:
    return run_crew(SPEC, llm, inputs, crews_dir, max_repairs)
