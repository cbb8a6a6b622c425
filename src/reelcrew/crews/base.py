"""Runs one crew from its user-editable YAML and returns a validated pydantic model.

The task carries its model as `response_model`, so Gemini answers in native JSON mode against
the schema (`responseMimeType: application/json` + `responseJsonSchema`). CrewAI 1.15 would end
the task on an answer that breaks the schema; our provider hands such an answer back as text
(gemini_llm.RepairableGemini), and a guardrail parses every answer into the model and checks the crew's
own rules: a bad answer goes back to the agent with the validation error, a bounded number of
times, then fails with what was wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from crewai import Agent, BaseLLM, Crew, Process, Task
from pydantic import BaseModel, ValidationError

from reelcrew.errors import ConfigError, CrewOutputError
from reelcrew.writer_quota import WritersPaused

M = TypeVar("M", bound=BaseModel)
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_\-]*)}")  # the pattern CrewAI interpolates
AGENT_KEYS = ("role", "goal", "backstory")
TASK_KEYS = ("description", "expected_output")


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"crew file {path} is missing",
                          "restore it from the repository's crews/ or point --crews-dir at a full copy")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", f"fix the YAML syntax in {path}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must map names to settings", "see the shipped crews/ for the expected shape")
    return data


def _section(data: dict, name: str, keys: tuple[str, ...], path: Path) -> dict[str, str]:
    section = data.get(name)
    if not isinstance(section, dict):
        raise ConfigError(f"{path} has no {name!r} entry", f"add '{name}:' with {', '.join(keys)} to {path}")
    for key in keys:
        if not isinstance(section.get(key), str) or not section[key].strip():
            raise ConfigError(f"{path}: {name}.{key} is missing or empty", f"give {name}.{key} some text in {path}")
    return section


def _check_placeholders(section: dict[str, str], keys: tuple[str, ...], inputs: dict, path: Path, name: str) -> None:
    for key in keys:
        for var in PLACEHOLDER.findall(section[key]):
            if var not in inputs:
                raise ConfigError(f"{path}: {name}.{key} uses {{{var}}}, which has no value",
                                  "use one of "
                                  f"{', '.join('{' + k + '}' for k in sorted(inputs) if not k.startswith('_'))}"
                                  f" or escape it")


def extract_json(text: str) -> Any:
    """The answer's JSON object: tolerates code fences and prose around it, as models add them."""
    text = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start == -1 or end <= start:
            raise
        return json.loads(text[start:end + 1])


@dataclass
class CrewSpec(Generic[M]):
    """One crew: the YAML folder name, its agent and task keys, the model its answer must fit."""

    folder: str
    agent: str
    task: str
    output: type[M]
    check: Callable[[M, dict], None] = lambda model, inputs: None  # extra rules: raise ValueError


@dataclass
class CrewResult(Generic[M]):
    value: M
    answers: int  # LLM answers it took (1 when the first answer was good)
    errors: list[str] = field(default_factory=list)


def run_crew(spec: CrewSpec[M], llm: BaseLLM, inputs: dict[str, Any], crews_dir: Path,
             max_repairs: int) -> CrewResult[M]:
    folder = Path(crews_dir) / spec.folder
    agents_path, tasks_path = folder / "agents.yaml", folder / "tasks.yaml"
    agent_cfg = _section(read_yaml(agents_path), spec.agent, AGENT_KEYS, agents_path)
    task_cfg = _section(read_yaml(tasks_path), spec.task, TASK_KEYS, tasks_path)
    _check_placeholders(agent_cfg, AGENT_KEYS, inputs, agents_path, spec.agent)
    _check_placeholders(task_cfg, TASK_KEYS, inputs, tasks_path, spec.task)

    errors: list[str] = []
    answers = 0
    parsed: list[M] = []

    def guardrail(output):  # CrewAI rejects a string return annotation here
        nonlocal answers
        answers += 1
        raw = output.raw or ""
        try:
            value = spec.output.model_validate(extract_json(raw))
            spec.check(value, inputs)
        except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
            message = _explain(exc)
            errors.append(f"answer {answers}: {message}\n    (answer began: {raw[:160]!r})")
            return False, (f"Your answer was rejected: {message}. Answer again with only a JSON object that "
                           f"matches the schema and fixes this.")
        parsed.append(value)
        return True, value.model_dump_json()

    agent = Agent(role=agent_cfg["role"], goal=agent_cfg["goal"], backstory=agent_cfg["backstory"],
                  llm=llm, allow_delegation=False, verbose=False, max_iter=3, max_retry_limit=0)
    # The schema travels as the request's response schema, not in the prompt; a repair is a fresh
    # request (prompt + previous answer + error), so no model turn and no thought signature is replayed.
    task = Task(name=spec.task, description=task_cfg["description"], expected_output=task_cfg["expected_output"],
                agent=agent, response_model=spec.output, guardrail=guardrail, guardrail_max_retries=max_repairs)
    if hasattr(llm, "brief"):
        llm.brief = {**inputs, "_task": spec.task}
    crew = Crew(agents=[agent], tasks=[task], process=Process.sequential, verbose=False, tracing=False)
    try:
        crew.kickoff(inputs=inputs)
    except (ConfigError, WritersPaused):
        raise
    except Exception as exc:  # CrewAI wraps guardrail exhaustion and provider errors alike
        if errors and not parsed:
            raise CrewOutputError(
                f"the {spec.agent} agent's answer did not fit {spec.output.__name__} after {answers} tries:\n  "
                + "\n  ".join(errors),
                f"edit crews/{spec.folder}/tasks.yaml to ask for the fields above, "
                "or choose a stronger model (GEMINI_MODEL)",
            ) from exc
        raise CrewOutputError(f"the {spec.agent} agent failed: {exc}",
                              "check the key and the model name (GEMINI_MODEL), "
                              "or rerun: finished stages are kept") from exc
    if not parsed:
        raise CrewOutputError(f"the {spec.agent} agent gave no answer", "rerun; finished stages are kept")
    return CrewResult(parsed[-1], answers, errors)


def _explain(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors()[:6]:
            loc = ".".join(str(p) for p in err["loc"]) or "answer"
            parts.append(f"{loc}: {err['msg']}")
        return "; ".join(parts)
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    return str(exc)
