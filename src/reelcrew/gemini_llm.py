"""The writers' Gemini: CrewAI's native provider in JSON mode, with schema failures left to our repair loop.

Imported only in real mode, so mock runs never load google-genai.
"""

from __future__ import annotations

from typing import Any

from crewai.events.types.llm_events import LLMCallType
from crewai.llms.providers.gemini.completion import GeminiCompletion
from pydantic import BaseModel, Field, ValidationError, model_validator


class RepairableGemini(GeminiCompletion):
    quota: Any = Field(default=None, exclude=True)  # writer_quota.WriterQuota: shared rate, 429s, cost ledger

    """CrewAI's native Gemini provider, except that an answer breaking the schema comes back as text.

    With `response_model` the provider asks for JSON against the schema (`responseMimeType`,
    `responseJsonSchema`) and validates the answer itself; on a failure it raises, which ends the
    task with no second chance. Returning the raw text instead lets the task's guardrail (crews/base.py)
    send the validation error back as a repair turn, like every other bad answer.
    Overrides a private hook of crewai 1.15.30 (pinned); tests/test_crews.py covers it through the wire.
    """

    # returning the raw text on purpose: crewai's callers also take a str (its non-structured path)
    def _validate_and_emit_structured_output(  # type: ignore[override]
            self, content: str, response_model: type[BaseModel], messages_for_event: list, from_task: Any = None,
            from_agent: Any = None, usage: dict | None = None, finish_reason: str | None = None,
            response_id: str | None = None) -> BaseModel | str:
        try:
            response_model.model_validate_json(content)
        except ValidationError:
            self._emit_call_completed_event(response=content, call_type=LLMCallType.LLM_CALL, from_task=from_task,
                                            from_agent=from_agent, messages=messages_for_event, usage=usage,
                                            finish_reason=finish_reason, response_id=response_id)
            return content
        return super()._validate_and_emit_structured_output(content, response_model, messages_for_event, from_task,
                                                            from_agent, usage, finish_reason, response_id)


    def _handle_completion(self, *args: Any, **kwargs: Any) -> Any:
        """One request through the writers' gates; a 429 is waited out (per minute) or pauses (per day)."""
        from google.genai import errors

        from reelcrew.video.quota import classify_429

        while True:
            if self.quota is not None:
                self.quota.before_call()
            try:
                return super()._handle_completion(*args, **kwargs)
            except errors.ClientError as exc:
                if exc.code != 429 or self.quota is None:
                    raise
                signal = classify_429(exc.details)
                self.quota.after_429("unknown" if signal.kind == "bare" else signal.kind, signal.retry_after)

    def _track_token_usage_internal(self, usage_data: dict[str, Any]) -> None:
        """CrewAI's own count, plus a cost row: thinking tokens are billed as output (completion_tokens)."""
        super()._track_token_usage_internal(usage_data)
        if self.quota is not None and usage_data.get("total_tokens"):
            self.quota.answered(self.model, int(usage_data.get("prompt_token_count") or 0),
                                int(usage_data.get("completion_tokens") or 0))


class ProjectGemini(RepairableGemini):
    """The writers on a Vertex AI project, with application default credentials.

    crewai 1.15.30 fills `api_key` from GOOGLE_API_KEY / GEMINI_API_KEY and then prefers it over the project,
    which sends the writers to Vertex express mode. Here the client is always built from the project and
    location, and the key from the environment is dropped.
    """

    @model_validator(mode="after")
    def _drop_environment_key(self) -> ProjectGemini:
        self.api_key = None
        return self

    def _initialize_client(self, use_vertexai: bool = False) -> Any:
        from google import genai

        return genai.Client(vertexai=True, project=self.project, location=self.location, **self.client_params)
