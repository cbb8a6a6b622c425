"""The Maker crew: Script → one Veo-ready VideoPrompt per scene, checked against the model's limits."""

from __future__ import annotations

from pathlib import Path

from crewai import BaseLLM

from reelcrew.crews.base import CrewResult, CrewSpec, run_crew
from reelcrew.models import PromptList, RewrittenPrompt, Script, VideoPrompt


def _checker(script: Script, model: str, bible: bool = False):
    """The rules a prompt list must keep. `bible`: the Maker's answers must also carry the cast bible verbatim; a
    person's edited prompts.json is checked without it (their words are theirs)."""

    def check(answer: PromptList, inputs: dict) -> None:
        if len(answer.prompts) != len(script.scenes):
            raise ValueError(f"prompts: expected {len(script.scenes)} (one per scene), got {len(answer.prompts)}")
        for i, prompt in enumerate(answer.prompts, start=1):
            if prompt.index != i or prompt.scene_index != i:
                raise ValueError(f"prompts[{i - 1}]: index and scene_index must both be {i}")
            if prompt.aspect_ratio != inputs["aspect_ratio"]:
                raise ValueError(f"prompts[{i - 1}].aspect_ratio must be {inputs['aspect_ratio']}")
            # the production's resolution and clip length are its identity, not the Maker's choice
            if prompt.resolution != inputs["resolution"]:
                raise ValueError(f"prompts[{i - 1}].resolution must be {inputs['resolution']}")
            if prompt.duration != int(inputs["clip_seconds"]):
                raise ValueError(f"prompts[{i - 1}].duration must be {inputs['clip_seconds']}")
            prompt.check_against(model)
            missing = bible_missing(script, prompt.prompt) if bible else []
            if missing:
                raise ValueError(f"prompts[{i - 1}].prompt must repeat the script's bible word for word; it lacks "
                                 + "; ".join(missing))
    return check


def bible_missing(script: Script, prompt: str) -> list[str]:
    """The parts of the cast and style bible a prompt does not carry verbatim (each character's look, the palette).

    Veo sees every clip alone: only the same words give the same face and clothes in every scene. The setting
    is not required (a scene may move elsewhere)."""
    missing = [f"{c.name}'s look {c.look!r}" for c in script.characters if c.look not in prompt]
    if script.palette and script.palette not in prompt:
        missing.append(f"the palette {script.palette!r}")
    return missing


def make_prompts(llm: BaseLLM, inputs: dict, script: Script, veo_model: str, crews_dir: Path,
                 max_repairs: int = 2) -> CrewResult[PromptList]:
    spec = CrewSpec("maker", "maker", "make_prompts", PromptList, _checker(script, veo_model, bible=True))
    result = run_crew(spec, llm, {**inputs, "script_json": script.model_dump_json()}, crews_dir, max_repairs)
    # The subtitle is the script's narration, whatever the Maker copied: captions must match the script.
    for prompt, scene in zip(result.value.prompts, script.scenes, strict=True):
        prompt.subtitle = scene.narration
    return result


def rephrase_prompt(llm: BaseLLM, inputs: dict, script: Script, prompt: VideoPrompt, reason: str, attempt: int,
                    crews_dir: Path, max_repairs: int = 2) -> CrewResult[RewrittenPrompt]:
    """The Maker rewrites a prompt Veo's safety filter refused, from the filter's reason, keeping the scene and the
    bible; an answer that repeats the refused words or drops the bible goes back for repair."""
    from reelcrew.mock_writer import bible_text

    def check(answer: RewrittenPrompt, _inputs: dict) -> None:
        if " ".join(answer.prompt.split()) == " ".join(prompt.prompt.split()):
            raise ValueError("prompt: unchanged; the safety filter refuses the same words again: rewrite it")
        missing = bible_missing(script, answer.prompt)
        if missing:
            raise ValueError("prompt must repeat the script's bible word for word; it lacks " + "; ".join(missing))

    scene = next((s for s in script.scenes if s.index == prompt.scene_index), None)
    spec = CrewSpec("maker", "maker", "rephrase_prompt", RewrittenPrompt, check)
    return run_crew(spec, llm, {**inputs, "prompt": prompt.prompt, "reason": reason, "attempt": attempt,
                                "bible": bible_text(script) or "(no characters)", "scene_index": prompt.scene_index,
                                "narration": scene.narration if scene else prompt.subtitle,
                                "script_json": script.model_dump_json()}, crews_dir, max_repairs)
