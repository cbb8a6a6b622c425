"""Better films (issue 15): the cast and style bible, filtered prompts rewritten, clip quality checks."""

from __future__ import annotations

import json
from collections import deque

import pytest

from reelcrew import crews, mock_writer
from reelcrew.llm import build_llm
from reelcrew.models import Script
from reelcrew.settings import DEFAULT_CREWS_DIR, load_settings


def brief(topic, lang="en", scenes=2):
    return crews.brief(topic, lang, scenes, "16:9", "cinematic", 8, "720p")


# -- the cast and style bible -----------------------------------------------------------------------
@pytest.mark.parametrize("topic,lang", [("how tea is made", "en"), ("一只猫的一天", "zh")])
def test_every_prompt_of_a_mock_production_carries_the_characters_looks_and_palette_verbatim(topic, lang):
    settings = load_settings(reelcrew_llm="mock")
    llm = build_llm(settings)
    script = crews.write_script(llm, brief(topic, lang), DEFAULT_CREWS_DIR).value
    assert len(script.characters) == 2 and script.setting and script.palette
    assert all(mock_writer.is_chinese(c.name) == (lang == "zh") for c in script.characters)
    prompts = crews.make_prompts(llm, brief(topic, lang), script, settings.veo3_model, DEFAULT_CREWS_DIR).value
    for prompt in prompts.prompts:
        for character in script.characters:
            assert character.look in prompt.prompt
        assert script.palette in prompt.prompt
    again = crews.write_script(llm, brief(topic, lang), DEFAULT_CREWS_DIR).value
    assert again.characters == script.characters  # deterministic: the same topic, the same cast


def test_a_script_from_before_the_bible_still_loads_and_gets_prompts():
    old = json.loads(mock_writer.write_script("how tea is made", "en", 2, 8, "cinematic").model_dump_json())
    for name in ("characters", "setting", "palette"):
        del old[name]
    script = Script.model_validate(old)
    assert script.characters == [] and script.palette == ""
    prompts = mock_writer.write_prompts(script, "cinematic", "16:9", "720p")
    assert "same wardrobe and colour palette" in prompts.prompts[0].prompt  # the old wording, as before


def test_a_maker_answer_that_drops_a_characters_look_goes_back_for_repair(fake, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-secret")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
    script = mock_writer.write_script("how tea is made", "en", 2, 8, "cinematic")
    good = mock_writer.write_prompts(script, "cinematic", "16:9", "720p")
    bad = good.model_copy(deep=True)
    bad.prompts[1].prompt = bad.prompts[1].prompt.replace(script.characters[0].look, "a person")
    fake.script.text_answers = deque([bad.model_dump_json(), good.model_dump_json()])
    result = crews.make_prompts(build_llm(load_settings()), brief("how tea is made"), script,
                                "veo-3.1-fast-generate-001", DEFAULT_CREWS_DIR)
    assert result.answers == 2 and result.value.prompts[1].prompt == good.prompts[1].prompt
    assert "prompts[1].prompt must repeat the script's bible word for word" in result.errors[0]
    assert script.characters[0].look in json.dumps(fake.text_requests[1], ensure_ascii=False)  # sent back to fix
