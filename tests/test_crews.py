"""The writers' room: mock and real (Gemini over HTTP to the fake) crews, YAML edits, bad input."""

from __future__ import annotations

import json
import shutil
from collections import deque

import pytest

from reelcrew import crews
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


def test_gemini_provider_survives_a_429_then_succeeds(fake, monkeypatch):
    fake.script.text_answers = deque([429, _good_script()])
    result = crews.write_script(_gemini(fake, monkeypatch), brief("how tea is made", scenes=3), DEFAULT_CREWS_DIR)
    assert result.value.title and len(fake.text_requests) == 2


def test_real_mode_without_a_key_names_the_variable():
    with pytest.raises(ConfigError, match="GEMINI_API_KEY") as info:
        build_llm(load_settings())
    assert "--mock" in info.value.fix


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
