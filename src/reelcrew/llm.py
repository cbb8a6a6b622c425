"""Builds the agents' LLM: Gemini through CrewAI's native provider, or the deterministic mock.

Real mode with no key is an error naming the variable to set; it never falls back to the
mock silently (the mock is only ever chosen explicitly: --mock or REELCREW_LLM=mock).
Each task hands its pydantic model to the LLM (`response_model`): Gemini then answers in native
JSON mode against that schema, and the mock answers with an instance of it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from crewai import BaseLLM
from pydantic import BaseModel, Field

from reelcrew import mock_writer
from reelcrew.errors import ConfigError
from reelcrew.models import RewrittenPrompt, Script
from reelcrew.settings import Settings


class MockLLM(BaseLLM):
    """Answers each task deterministically from the production brief (topic, language, script...).

    The crew runner sets `brief` to the task's inputs before kickoff, so the mock writes
    for the real topic; `received` keeps every prompt sent, so users (and tests) can see
    exactly what their YAML produced.
    """

    brief: dict[str, Any] = Field(default_factory=dict)
    received: list[list[dict[str, Any]]] = Field(default_factory=list)
    latency: float = 0.0  # seconds per answer (REELCREW_MOCK_WRITER_LATENCY), like a real model's

    def call(self, messages, tools=None, callbacks=None, available_functions=None,
             from_task=None, from_agent=None, response_model=None, **kwargs) -> str:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        self.received.append(list(messages))
        if self.latency:
            time.sleep(self.latency)
        b = self.brief
        task = getattr(from_task, "name", None) or b.get("_task")
        answer: BaseModel
        if task == "write_script":
            answer = mock_writer.write_script(b["topic"], b["language"], int(b["scenes"]), int(b["clip_seconds"]),
                                              b["style"])
        elif task == "write_seo":
            answer = mock_writer.write_seo(Script.model_validate_json(b["script_json"]), b["topic"])
        elif task == "make_prompts":
            answer = mock_writer.write_prompts(Script.model_validate_json(b["script_json"]), b["style"],
                                               b["aspect_ratio"], b["resolution"])
        elif task == "rephrase_prompt":
            script = Script.model_validate_json(b["script_json"])
            scene = next((s for s in script.scenes if s.index == int(b["scene_index"])), None)
            answer = RewrittenPrompt(prompt=mock_writer.rephrase(b["prompt"], script, scene, b["style"],
                                                                 int(b["attempt"])))
        else:
            raise ValueError(f"mock LLM has no answer for task {task!r}")
        if response_model is not None and isinstance(answer, response_model):
            return answer  # what a native structured-output provider returns: the validated model
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


def build_llm(settings: Settings, quota: Any = None) -> BaseLLM:
    """`quota` (writer_quota.WriterQuota) puts the writers behind the shared rate gate, 429 handling and cost ledger."""
    if settings.mock_llm:
        return MockLLM(model="reelcrew-mock", latency=settings.reelcrew_mock_writer_latency)
    from reelcrew.gemini_llm import ProjectGemini, RepairableGemini  # google-genai loads only in real mode

    model = settings.gemini_model_id
    # Gemini 3 is tuned for its default temperature (1.0); send one only when the user chose it.
    tuning: dict[str, Any] = {} if settings.gemini_temperature is None else {"temperature": settings.gemini_temperature}
    if settings.google_genai_use_vertexai:
        with _lock:
            if settings.vertex_auth() == "express":  # asked for explicitly: GOOGLE_VERTEX_EXPRESS=true
                return RepairableGemini(model=model, provider="gemini", api_key=settings.api_key(), use_vertexai=True,
                                        quota=quota, **tuning)
            return ProjectGemini(model=model, provider="gemini", project=settings.google_cloud_project,
                                 location=settings.google_cloud_location, use_vertexai=True, quota=quota, **tuning)
    key = settings.api_key()
    if not key:
        raise ConfigError("no Gemini API key: the writers' room needs one in real mode",
                          "set GEMINI_API_KEY (or GOOGLE_API_KEY) in the environment or .env, "
                          "or run with --mock / REELCREW_LLM=mock to rehearse offline")
    with _lock:
        return RepairableGemini(model=model, provider="gemini", api_key=key, quota=quota, **tuning)
