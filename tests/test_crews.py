"""The writers' room: mock and real (Gemini over HTTP to the fake) crews, YAML edits, bad input."""

from __future__ import annotations

import json
import shutil
from collections import deque

import pytest

from reelcrew import crews
from reelcrew.crews.base import _explain, extract_json
from reelcrew.errors import ConfigError, CrewOutputError
from reelcrew.llm import build_llm
from reelcrew.mock_writer import is_chinese
from reelcrew.settings import DEFAULT_CREWS_DIR, load_settings


def brief(topic, lang="en", scenes=5):
    return crews.brief(topic, lang, scenes, "16:9", "cinematic", 8, "720p")


@pytest.mark.parametrize("topic,lang", [("how tea is made", "en"), ("茶是怎么制作的", "zh")])
def test_three_mock_crews_write_valid_models_in_the_topics_language(topic, lang):
    settings = load_settings(reelcrew_llm="mock")
    llm = build_llm(settings)
    b = brief(topic, lang)
    script = crews.write_script(llm, b, DEFAULT_CREWS_DIR)
    seo = crews.write_seo(llm, b, script.value, DEFAULT_CREWS_DIR)
    prompts = crews.make_prompts(llm, b, script.value, settings.veo3_model, DEFAULT_CREWS_DIR)
    assert (script.answers, seo.answers, prompts.answers) == (1, 1, 1)
    assert len(script.value.scenes) == 5 and len(prompts.value.prompts) == 5
    assert all(is_chinese(s.narration) == (lang == "zh") for s in script.value.scenes)
    assert is_chinese(seo.value.title) == (lang == "zh")
    assert [p.subtitle for p in prompts.value.prompts] == [s.narration for s in script.value.scenes]
    other = crews.write_script(llm, brief("why volcanoes erupt"), DEFAULT_CREWS_DIR).value
    assert other.scenes[1].narration != script.value.scenes[1].narration  # topic-aware, not canned


def test_editing_a_copy_of_the_yaml_changes_what_the_llm_receives(tmp_path):
    copy = tmp_path / "crews"
    shutil.copytree(DEFAULT_CREWS_DIR, copy)
    path = copy / "scriptwriter" / "agents.yaml"
    path.write_text(path.read_text().replace("Short-form Video Scriptwriter", "Haiku Poet of Tea"))
    tasks = copy / "scriptwriter" / "tasks.yaml"
    tasks.write_text(tasks.read_text().replace("Write a script for a short video about", "Compose a reel about"))
    llm = build_llm(load_settings(reelcrew_llm="mock"))
    crews.write_script(llm, brief("how tea is made"), copy)
    sent = json.dumps(llm.received[-1], ensure_ascii=False)
    assert "Haiku Poet of Tea" in sent and "Compose a reel about: how tea is made" in sent
    assert "Short-form Video Scriptwriter" not in sent


def test_broken_yaml_and_unknown_placeholder_are_errors_naming_file_and_key(tmp_path):
    llm = build_llm(load_settings(reelcrew_llm="mock"))
    copy = tmp_path / "crews"
    shutil.copytree(DEFAULT_CREWS_DIR, copy)
    (copy / "seo" / "tasks.yaml").write_text("write_seo:\n  description: [unclosed\n")
    with pytest.raises(ConfigError, match=r"seo/tasks.yaml is not valid YAML"):
        crews.write_seo(llm, brief("x"), crews.write_script(llm, brief("x"), copy).value, copy)
    agents = copy / "scriptwriter" / "agents.yaml"
    agents.write_text(agents.read_text().replace("{topic}", "{subject}"))
    with pytest.raises(ConfigError, match=r"scriptwriter.goal uses \{subject\}"):
        crews.write_script(llm, brief("x"), copy)
    (copy / "maker" / "agents.yaml").write_text("someone_else:\n  role: x\n")
    with pytest.raises(ConfigError, match=r"has no 'maker' entry"):
        crews.make_prompts(llm, brief("x"), crews.write_script(llm, brief("x"), DEFAULT_CREWS_DIR).value,
                           "veo-3.1-fast-generate-001", copy)


def _gemini(fake, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-secret")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
    return build_llm(load_settings())


def _good_script(n=3):
    from reelcrew.mock_writer import write_script

    return write_script("how tea is made", "en", n, 8, "cinematic").model_dump_json()


def test_gemini_provider_repairs_a_non_json_answer_on_retry(fake, monkeypatch):
    fake.script.text_answers = deque(["Sure! Here is a lovely script about tea.", _good_script()])
    result = crews.write_script(_gemini(fake, monkeypatch), brief("how tea is made", scenes=3), DEFAULT_CREWS_DIR)
    assert result.answers == 2 and len(result.value.scenes) == 3
    retry_prompt = json.dumps(fake.text_requests[1], ensure_ascii=False)
    assert "not valid JSON" in retry_prompt  # the validation error went back to the agent


def test_gemini_provider_sends_schema_violations_back_then_fails_clearly(fake, monkeypatch):
    bad = json.loads(_good_script())
    bad["scenes"][0]["duration"] = 99
    fake.script.text_answers = deque([json.dumps(bad)] * 3)
    with pytest.raises(CrewOutputError, match=r"after 3 tries[\s\S]*duration must be 8"):
        crews.write_script(_gemini(fake, monkeypatch), brief("how tea is made", scenes=3), DEFAULT_CREWS_DIR, 2)


def _schema_breaking_script() -> str:
    """Valid JSON that the provider's own schema check rejects (an index that is not an integer)."""
    bad = json.loads(_good_script())
    bad["scenes"][0]["index"] = "first"
    return json.dumps(bad)


def _generation_config(request: dict) -> dict:
    return request["generationConfig"]


@pytest.mark.parametrize("temperature,sent", [(None, None), ("", None), ("0.4", 0.4)])
def test_gemini_requests_name_the_model_carry_the_schema_and_a_temperature_only_when_set(
        fake, monkeypatch, temperature, sent):
    if temperature is not None:
        monkeypatch.setenv("GEMINI_TEMPERATURE", temperature)
    fake.script.text_answers = deque([_good_script()])
    result = crews.write_script(_gemini(fake, monkeypatch), brief("how tea is made", scenes=3), DEFAULT_CREWS_DIR)
    assert result.answers == 1 and len(result.value.scenes) == 3
    assert fake.text_models == ["gemini-3.5-flash"]
    config = _generation_config(fake.text_requests[0])
    assert config["responseMimeType"] == "application/json"
    schema = config["responseJsonSchema"]
    assert schema["required"] == ["title", "hook", "language", "scenes", "characters", "setting", "palette"]
    assert schema["properties"]["scenes"]["items"]["properties"]["index"]["type"] == "integer"
    assert config.get("temperature") == sent


def test_gemini_model_override_names_the_url_and_an_unknown_model_is_a_clear_error(fake, monkeypatch):
    monkeypatch.setenv("GEMINI_MODEL", "gemini/gemini-2.5-flash")  # CrewAI's prefix is accepted and dropped
    with pytest.raises(CrewOutputError, match="not found") as info:
        crews.write_script(_gemini(fake, monkeypatch), brief("how tea is made", scenes=3), DEFAULT_CREWS_DIR)
    assert fake.text_models == ["gemini-2.5-flash"] and "GEMINI_MODEL" in info.value.fix


def test_a_schema_breaking_answer_is_repaired_by_a_fresh_request_without_replaying_the_model_turn(fake, monkeypatch):
    fake.script.text_answers = deque([_schema_breaking_script(), _good_script()])
    result = crews.write_script(_gemini(fake, monkeypatch), brief("how tea is made", scenes=3), DEFAULT_CREWS_DIR)
    assert result.answers == 2 and [s.index for s in result.value.scenes] == [1, 2, 3]
    assert len(fake.text_requests) == 2 and "scenes.0.index" in result.errors[0]
    repair = fake.text_requests[1]
    sent = json.dumps(repair, ensure_ascii=False)
    assert "scenes.0.index: Input should be a valid integer" in sent  # the error went back to the agent
    assert '\\"index\\": \\"first\\"' in sent  # with the answer it was about
    # The first answer carried a thought signature; the repair is a new single-turn request (the previous
    # answer is quoted in the user message), so there is no model turn whose signature must be sent back.
    assert [content["role"] for content in repair["contents"]] == ["user"]
    assert "thoughtSignature" not in sent and "thought_signature" not in sent
    first_schema = _generation_config(fake.text_requests[0])["responseJsonSchema"]
    assert _generation_config(repair)["responseJsonSchema"] == first_schema


def test_schema_breaking_answers_exhaust_the_repairs_and_every_error_is_listed(fake, monkeypatch):
    fake.script.text_answers = deque([_schema_breaking_script()] * 3)
    with pytest.raises(CrewOutputError, match=r"did not fit Script after 3 tries") as info:
        crews.write_script(_gemini(fake, monkeypatch), brief("how tea is made", scenes=3), DEFAULT_CREWS_DIR, 2)
    assert len(fake.text_requests) == 3
    for n in (1, 2, 3):
        assert f"answer {n}: scenes.0.index: Input should be a valid integer" in info.value.problem


def test_gemini_provider_survives_a_429_then_succeeds(fake, monkeypatch):
    fake.script.text_answers = deque([429, _good_script()])
    result = crews.write_script(_gemini(fake, monkeypatch), brief("how tea is made", scenes=3), DEFAULT_CREWS_DIR)
    assert result.value.title and len(fake.text_requests) == 2


def test_real_mode_without_a_key_names_the_variable():
    with pytest.raises(ConfigError, match="GEMINI_API_KEY") as info:
        build_llm(load_settings())
    assert "--mock" in info.value.fix


def test_extract_json_takes_fenced_json_and_json_inside_prose():
    assert extract_json('```json\n{"title": "Tea"}\n```') == {"title": "Tea"}
    assert extract_json('```\n{"a": [1, 2]}\n```') == {"a": [1, 2]}
    assert extract_json('Sure! Here it is: {"title": "Tea", "tags": ["a"]} Enjoy.') == {"title": "Tea", "tags": ["a"]}
    assert extract_json('  {"title": "茶"}  ') == {"title": "茶"}


@pytest.mark.parametrize("text", ["Sure! Here is a lovely script about tea.", '{"title": "Tea", "hook": ', ""])
def test_extract_json_rejects_what_is_not_json_with_a_readable_error(text):
    with pytest.raises(json.JSONDecodeError) as info:
        extract_json(text)
    assert _explain(info.value).startswith("not valid JSON (")


def test_writers_on_a_vertex_project_use_its_bearer_token_not_a_stray_api_key(vertex_project, fake):
    fake.script.text_answers = deque([_good_script()])
    result = crews.write_script(build_llm(load_settings()), brief("how tea is made", scenes=3), DEFAULT_CREWS_DIR)
    assert len(result.value.scenes) == 3
    calls = [r for r in fake.requests if r["path"].endswith(":generateContent")]
    assert calls and all(r["path"].startswith("/v1beta1/projects/test-project/locations/us-central1/publishers/"
                                              "google/models/") for r in calls)
    assert all(r["token"] in fake.tokens_issued and not r["api_key"] for r in calls)


def test_writers_use_vertex_express_mode_only_when_the_setting_asks(vertex_project, fake, monkeypatch):
    monkeypatch.setenv("GOOGLE_VERTEX_EXPRESS", "true")
    fake.script.text_answers = deque([_good_script()])
    crews.write_script(build_llm(load_settings()), brief("how tea is made", scenes=3), DEFAULT_CREWS_DIR)
    calls = [r for r in fake.requests if r["path"].endswith(":generateContent")]
    assert calls and all(r["path"].startswith("/v1/publishers/google/models/") and r["api_key"] and not r["token"]
                         for r in calls)
    monkeypatch.delenv("GOOGLE_VERTEX_EXPRESS")
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT") as info:  # a key alone does not mean express mode
        build_llm(load_settings())
    assert "GOOGLE_VERTEX_EXPRESS=true" in info.value.fix
