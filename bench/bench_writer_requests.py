"""The size of the writers' extra requests the estimate prices (writer_quota.REWRITE_TOKENS, GROUNDING_TOKENS).

Run: .venv/bin/python bench/bench_writer_requests.py  (offline: the mock writer records the exact messages the
shipped crews/ YAML produces; prints the characters sent for one Maker rewrite of a filtered prompt and for the
grounding prompt, and a token figure at 4 characters a token, the usual rate for English)."""

from __future__ import annotations

import json

from reelcrew import crews, mock_writer
from reelcrew.grounding import PROMPT
from reelcrew.llm import MockLLM
from reelcrew.models import RewrittenPrompt
from reelcrew.settings import DEFAULT_CREWS_DIR

STYLE = "cinematic, natural light, consistent characters"
REASON = ("Veo could not generate 1 videos based on the prompt provided. You will not be charged for this request. "
          "Try rephrasing the prompt. Support codes: 42237218")


def main() -> None:
    schema = len(json.dumps(RewrittenPrompt.model_json_schema()))
    for topic, language in (("how tea is made", "en"), ("一只猫的一天", "zh")):
        script = mock_writer.write_script(topic, language, 6, 8, STYLE)
        prompt = mock_writer.write_prompts(script, STYLE, "16:9", "720p").prompts[0]
        llm = MockLLM(model="mock")
        answer = crews.rephrase_prompt(llm, crews.brief(topic, language, 6, "16:9", STYLE, 8, "720p"), script,
                                       prompt, REASON, 1, DEFAULT_CREWS_DIR).value.prompt
        sent = sum(len(m["content"]) for m in llm.received[-1] if isinstance(m.get("content"), str)) + schema
        print(f"rewrite ({language}): {sent} characters sent (schema {schema}) ~{sent // 4} tokens; "
              f"answer {len(answer)} characters ~{len(answer) // 4} tokens")
        grounding = len(PROMPT.format(topic=topic, language_name=crews.LANGUAGE_NAMES[language]))
        print(f"grounding prompt ({language}): {grounding} characters ~{grounding // 4} tokens "
              "(plus the search results Gemini reads, billed as input)")


if __name__ == "__main__":
    main()
