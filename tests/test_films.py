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
    """A planned production whose script is the mock's, with scene 2 filmed as `visual2`."""
    from reelcrew.pipeline import Pipeline

    pipeline = Pipeline(settings, store)
    [prod] = pipeline.plan(["how tea is made"])
    script = mock_writer.write_script(prod.topic, prod.language, settings.scenes, settings.clip_seconds,
                                      settings.style)
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
    rewrites = store.followups(prod.id, 2, "rephrase")
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
    [rewrite] = manifest["clips"][1]["followups"]
    assert (rewrite["kind"], rewrite["attempt"], rewrite["from_key"]) == ("rephrase", 1, first.key)
    assert manifest["clips"][0]["followups"] == []
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
    assert [len(store.followups(prod.id, i, "rephrase")) for i in (1, 2)] == [2, 2]
    assert [c.status.value for c in store.production_clips(prod.id)] == ["filtered", "filtered"]
    assert store.production(prod.id).status.value == "failed"  # no clip at all: nothing to cut
    pipeline.run([prod])  # a second run rewrites no more
    assert [len(store.followups(prod.id, i, "rephrase")) for i in (1, 2)] == [2, 2]


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
    assert store.followups(prod.id) == [] and fake.accepted == 2


# -- clip quality checks ---------------------------------------------------------------------------------
def test_a_black_and_a_frozen_clip_from_the_fake_are_flagged_and_a_good_one_is_not(real_env, fake):
    from reelcrew import service
    from reelcrew.store import open_ledger

    fake.script.bad_videos = {"BLACKCLIP": "black", "FROZENCLIP": "frozen"}
    settings = load_settings(scenes=3, clip_seconds=4)
    store = open_ledger(settings)
    pipeline, prod, _ = _production(settings, store)
    script = Script.model_validate_json(store.stage(prod.id, "script"))
    script.scenes[1].visual, script.scenes[2].visual = "BLACKCLIP a kettle", "FROZENCLIP a cup"
    store.save_stage(prod.id, "script", script.model_dump_json(), 1)
    pipeline.run([prod], until="clips")
    clips = store.production_clips(prod.id)
    assert [c.status.value for c in clips] == ["done", "done", "done"]  # flag only: paid, valid, kept
    assert [c.qc["ok"] for c in clips] == [True, False, False]
    assert clips[1].qc["problems"][0].startswith("black for") and clips[1].qc["black_seconds"] > 3
    assert clips[2].qc["problems"] == [f"frozen picture for {clips[2].qc['frozen_seconds']:.1f} of 4.0 s"]
    assert clips[0].qc["silent_seconds"] == 0 and clips[0].qc["cpu_seconds"] > 0
    manifest = json.loads((pipeline.folder(prod.id) / "manifest.json").read_text())
    assert [c["qc"]["ok"] for c in manifest["clips"]] == [True, False, False]
    [report] = service.status(settings, prod.id, store).productions
    assert [c.qc["ok"] for c in report.clips] == [True, False, False]
    flagged = [e for e in store.recent_events(prod.id, 200) if e["kind"] == "qc_flagged"]
    assert sorted(e["clip_index"] for e in flagged) == [2, 3] and fake.accepted == 3


def test_qc_regenerate_makes_a_flagged_clip_again_as_a_new_paid_variant_shown_in_the_estimate(real_env, fake):
    from reelcrew import service
    from reelcrew.store import open_ledger

    fake.script.bad_videos = {"FROZENCLIP": "frozen-once"}  # Veo's retake comes out right
    settings = load_settings(scenes=2, clip_seconds=4, qc="regenerate", qc_max_regenerations=1)
    store = open_ledger(settings)
    pipeline, prod, _ = _production(settings, store, "FROZENCLIP a cup on a table")
    pipeline.run([prod], until="prompts")
    estimate = service.estimate(settings, [prod], store)
    assert estimate.qc_regenerations_usd == estimate.video_usd > 0  # the worst case, before approval
    assert estimate.usd == pytest.approx(estimate.video_usd * 2 + estimate.writers_usd)
    pipeline.run([prod], until="clips")
    clips = store.production_clips(prod.id)
    assert [c.qc["ok"] for c in clips] == [True, True] and clips[1].prompt.variant == 1
    [again] = store.followups(prod.id, 2, "regenerate")
    flagged = store.clip(again["from_key"])
    assert flagged.qc["ok"] is False and flagged.cost_usd > 0  # the flagged take was paid: Veo made it
    assert fake.accepted == 3 and len([r for r in store.cost_rows() if r["kind"] == "clip"]) == 3
    assert json.loads(store.stage(prod.id, "prompts"))["prompts"][1]["variant"] == 1


# -- Veo parameters ------------------------------------------------------------------------------------------
def test_vertex_gets_silent_clips_prompt_enhancement_and_person_generation_on_the_wire(
        real_env, vertex_project, fake, tmp_path):
    from reelcrew.media import probe
    from reelcrew.models import VideoPrompt
    from reelcrew.video.generator import ClipJob
    from reelcrew.video.registry import veo_options
    from tests.video_helpers import stack

    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_generate_audio=False, veo3_enhance_prompt=True,
                                 veo3_person_generation="allow_adult")
    prompt = VideoPrompt(index=1, scene_index=1, prompt="a lighthouse at dusk, waves below", duration=4, seed=7)
    clip = store.ensure_clip("p1", prompt, settings.veo3_model, options=veo_options(settings))
    assert clip.key != prompt.clip_key(settings.veo3_model)  # another request, another clip
    [done] = gen.run([ClipJob(clip.key, out / "clip-01.mp4")])
    assert done.status.value == "done", done.error
    [op] = fake.ops.values()
    assert (op["params"]["generateAudio"], op["params"]["enhancePrompt"], op["params"]["personGeneration"],
            op["params"]["seed"]) == (False, True, "allow_adult", 7)
    assert not probe(done.path).has_audio  # a silent clip is valid when silence was asked for
    assert done.qc["ok"] and done.qc["silent_seconds"] is None


@pytest.mark.parametrize("setting,value,needle", [
    ("veo3_generate_audio", False, "silent clips are not available on the gemini backend"),
    ("veo3_person_generation", "allow_adult", "person_generation=allow_adult is refused on the gemini backend"),
])
def test_a_veo_parameter_the_gemini_api_refuses_stops_the_run_before_any_spend(real_env, fake, setting, value,
                                                                                needle):
    from reelcrew.errors import ConfigError
    from reelcrew.pipeline import Pipeline
    from reelcrew.store import open_ledger

    settings = load_settings(scenes=2, **{setting: value})
    store = open_ledger(settings)
    pipeline = Pipeline(settings, store)
    prods = pipeline.plan(["how tea is made"])
    with pytest.raises(ConfigError, match=needle) as info:
        pipeline.run(prods)
    assert setting.upper() in info.value.fix or setting in info.value.fix
    assert fake.submit_attempts == 0 and store.stage(prods[0].id, "script") is None
