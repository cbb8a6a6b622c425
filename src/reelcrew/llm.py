"""Builds the agents' LLM: Gemini through CrewAI's native provider, or the deterministic mock.

Real mode with no key is an error naming the variable to set; it never falls back to the
mock silently (the mock is only ever chosen explicitly: --mock or REELCREW_LLM=mock).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from crewai import LLM, BaseLLM
from crewai.llms.providers.gemini.completion import GeminiCompletion
from pydantic import Field, model_validator

from reelcrew import mock_writer
from reelcrew.errors import ConfigError
from reelcrew.models import Script
from reelcrew.settings import Settings


class MockLLM(BaseLLM):
    """Answers each task deterministically from the production brief (topic, language, script...).

    The crew runner sets `brief` to the task's inputs before kickoff, so the mock writes
    for the real topic; `received` keeps every prompt sent, so users (and tests) can see
    exactly what their YAML produced.
    """

    brief: dict[str, Any] = Field(default_factory=dict)
    received: list[list[dict[str, Any]]] = Field(default_factory=list)

    def call(self, messages, tools=None, callbacks=None, available_functions=None,
             from_task=None, from_agent=None, response_model=None, **kwargs) -> str:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        self.received.append(list(messages))
        b = self.brief
        task = getattr(from_task, "name", None) or b.get("_task")
        if task == "write_script":
            answer = mock_writer.write_script(b["topic"], b["language"], int(b["scenes"]), int(b["clip_seconds"]), b["style"])
        elif task == "write_seo":
            answer = mock_writer.write_seo(Script.model_validate_json(b["script_json"]), b["topic"])
        elif task == "make_prompts":
            answer = mock_writer.write_prompts(Script.model_validate_json(b["script_json"]), b["style"],
                                               b["aspect_ratio"], b["resolution"])
        else:
            raise ValueError(f"mock LLM has no answer for task {task!r}")
        return json.dumps(answer.model_dump(mode="json"), ensure_ascii=False)

    def supports_function_calling(self) -> bool:
        return False

    def supports_stop_words(self) -> bool:
        return False

    def get_context_window_size(self) -> int:
        return 1_000_000

    def get_input_tokens_count(self, *args, **kwargs) -> int:
        return 1


_lock = threading.Lock()


class ProjectGemini(GeminiCompletion):
    """CrewAI's Gemini provider on a Vertex AI project, with application default credentials.

    crewai 1.15.30 fills `api_key` from GOOGLE_API_KEY / GEMINI_API_KEY and then prefers it over the project,
    which sends the writers to Vertex express mode. Here the client is always built from the project and
    location, and the key from the environment is dropped.
    """

    @model_validator(mode="after")
    def _drop_environment_key(self) -> "ProjectGemini":
        self.api_key = None
        return self

    def _initialize_client(self, use_vertexai: bool = False) -> Any:
        from google import genai

        return genai.Client(vertexai=True, project=self.project, location=self.location, **self.client_params)


def build_llm(settings: Settings) -> BaseLLM:
    if settings.mock_llm:
        return MockLLM(model="reelcrew-mock")
    model = settings.gemini_model.removeprefix("gemini/").removeprefix("google/")
    if settings.google_genai_use_vertexai:
        with _lock:
            if settings.vertex_auth() == "express":  # asked for explicitly: GOOGLE_VERTEX_EXPRESS=true
                return LLM(model=f"gemini/{model}", api_key=settings.api_key(), use_vertexai=True, temperature=0.7)
            return ProjectGemini(model=model, provider="gemini", project=settings.google_cloud_project,
                                 location=settings.google_cloud_location, use_vertexai=True, temperature=0.7)
    key = settings.api_key()
    if not key:
        raise ConfigError("no Gemini API key: the writers' room needs one in real mode",
                          "set GEMINI_API_KEY (or GOOGLE_API_KEY) in the environment or .env, "
                          "or run with --mock / REELCREW_LLM=mock to rehearse offline")
    with _lock:
        return LLM(model=f"gemini/{model}", api_key=key, temperature=0.7)
