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


# -- filtered prompts rewritten -----------------------------------------------------------------------
def _production(settings, store, visual2: str | None = None):
    """A planned 2-scene production whose script is the mock's, with scene 2 filmed as `visual2`."""
    from reelcrew.pipeline import Pipeline

    pipeline = Pipeline(settings, store)
    [prod] = pipeline.plan(["how tea is made"])
    script = mock_writer.write_script(prod.topic, prod.language, 2, settings.clip_seconds, settings.style)
    if visual2 is not None:
        script.scenes[1].visual = visual2
    store.save_stage(prod.id, "script", script.model_dump_json(), 1)
    return pipeline, prod, script


def test_a_filtered_prompt_is_rewritten_and_done_on_the_second_attempt_and_only_that_one_is_paid(real_env, fake):
    from reelcrew.store import open_ledger

    settings = load_settings(scenes=2, clip_seconds=4)
    store = open_ledger(settings)
    pipeline, prod, script = _production(settings, store, "an UNSAFE close-up of a boiling kettle")
    pipeline.run([prod], until="clips")
    clips = store.production_clips(prod.id)
    assert [c.status.value for c in clips] == ["done", "done"]
    rewrites = store.rewrites(prod.id, 2)
    assert len(rewrites) == 1 and "not be charged" in rewrites[0]["reason"] and rewrites[0]["to_key"] == clips[1].key
    first = store.clip(rewrites[0]["from_key"])
    assert first.status.value == "filtered" and "UNSAFE" in first.prompt.prompt
    assert "UNSAFE" not in clips[1].prompt.prompt
    assert all(c.look in clips[1].prompt.prompt for c in script.characters)  # the bible survives the rewrite
    # two attempts at scene 2 went to Veo, one was paid
    assert fake.accepted == 3 and sum(n for p, n in fake.accepted_by_prompt.items() if "UNSAFE" in p) == 1
    attempts = [store.receipts(first.key), store.receipts(clips[1].key)]
    assert [len(a) for a in attempts] == [1, 1] and all(a[0]["outcome"] == "accepted" for a in attempts)
    charged = {row["clip_key"] for row in store.cost_rows() if row["kind"] == "clip"}
    assert charged == {clips[0].key, clips[1].key}
    folder = pipeline.folder(prod.id)
    manifest = json.loads((folder / "manifest.json").read_text())
    [rewrite] = manifest["clips"][1]["rewrites"]
    assert rewrite["attempt"] == 1 and rewrite["from_key"] == first.key and manifest["clips"][0]["rewrites"] == []
    on_disk = json.loads((folder / "prompts.json").read_text())
    assert on_disk["prompts"][1]["prompt"] == clips[1].prompt.prompt  # the file says what was made
    assert [e["kind"] for e in store.recent_events(prod.id, 200)].count("rephrased") == 1


def test_rewrites_stop_at_the_limit_and_the_scene_stays_filtered(monkeypatch):
    from reelcrew.store import open_ledger

    monkeypatch.setenv("VEO3_MOCK_FILTER_RATE", "1")  # the mock filters every request, rewritten or not
    settings = load_settings(scenes=2, reelcrew_llm="mock", veo3_mock_mode=True, veo3_rephrase_attempts=2)
    store = open_ledger(settings)
    pipeline, prod, _ = _production(settings, store)
    pipeline.run([prod])
    assert [len(store.rewrites(prod.id, i)) for i in (1, 2)] == [2, 2]
    assert [c.status.value for c in store.production_clips(prod.id)] == ["filtered", "filtered"]
    assert store.production(prod.id).status.value == "failed"  # no clip at all: nothing to cut
    pipeline.run([prod])  # a second run rewrites no more
    assert [len(store.rewrites(prod.id, i)) for i in (1, 2)] == [2, 2]


def test_a_paid_failure_and_a_prompt_a_person_wrote_are_never_rewritten(real_env, fake):
    from reelcrew.store import open_ledger

    settings = load_settings(scenes=2, veo3_max_retries=0)
    store = open_ledger(settings)
    pipeline, prod, _ = _production(settings, store, "FAILOP: the kettle")
    pipeline.run([prod], until="prompts")
    prompts = json.loads(store.stage(prod.id, "prompts"))
    prompts["prompts"][0]["prompt"] = "UNSAFE words a person chose"
    store.replace_stage(prod.id, "prompts", json.dumps(prompts))
    store.log_action("edit", "prompt 1 edited by olivia", "olivia", prod.id, 1, "prompts")  # as the API records it
    pipeline.run([prod])
    clips = store.production_clips(prod.id)
    assert [c.status.value for c in clips] == ["filtered", "failed"]
    assert store.rewrites(prod.id) == [] and fake.accepted == 2
