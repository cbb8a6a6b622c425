"""Several samples per clip on Vertex AI, chosen by the quality check and billed each; the video-only price.

Real google-genai SDK against the fake Google on its Vertex project paths (issue 15)."""

from __future__ import annotations

import hashlib
import json
import logging
import os

import pytest

from reelcrew import mock_writer
from reelcrew.models import ClipStatus, Script, VideoPrompt
from reelcrew.settings import load_settings

FAST_720P = 0.10  # veo-3.1-fast-generate-001, 720p, with audio (config/pipeline.yaml)
FAST_720P_VIDEO_ONLY = 0.08


def _production(settings, store, visual1: str):
    """A planned production of the mock's script, scene 1 filmed as `visual1`."""
    from reelcrew.pipeline import Pipeline

    pipeline = Pipeline(settings, store)
    [prod] = pipeline.plan(["how tea is made"])
    script = mock_writer.write_script(prod.topic, prod.language, settings.scenes, settings.clip_seconds,
                                      settings.style)
    script.scenes[0].visual = visual1
    store.save_stage(prod.id, "script", Script.model_validate(script).model_dump_json(), 1)
    return pipeline, prod


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_black_first_sample_gives_way_to_the_second_with_every_sample_billed_and_the_choice_recorded(
        real_env, vertex_project, fake):
    from reelcrew import service
    from reelcrew.store import open_ledger

    fake.script.bad_videos = {"BLACKFIRST": "black-first"}  # sample 1 of each request comes out black
    settings = load_settings(scenes=1, clip_seconds=4, veo3_sample_count=2)
    store = open_ledger(settings)
    pipeline, prod = _production(settings, store, "BLACKFIRST a kettle on a stove")
    pipeline.run([prod], until="clips")
    [op] = fake.ops.values()
    assert op["params"]["sampleCount"] == 2 and fake.accepted == 1  # one request, two videos
    [clip] = store.production_clips(prod.id)
    assert clip.status == ClipStatus.done, clip.error
    assert clip.qc["chosen_sample"] == 2 and clip.qc["ok"] is True
    first, second = clip.qc["samples"]
    assert first["state"] == "flagged" and first["problems"][0].startswith("black for")
    assert second["state"] == "clean" and "sample 1: black for" in clip.qc["why"]
    clips_dir = pipeline.folder(prod.id) / "clips"
    kept = clips_dir / "clip-01.sample-1.mp4"
    assert first["file"] == kept.name and second["file"] == "clip-01.mp4"
    assert _digest(kept) != _digest(clips_dir / "clip-01.mp4")  # the black one is kept beside, not cut in
    # Veo bills every video it made: 2 samples x 4 s x the price
    [charge] = [row for row in store.cost_rows() if row["kind"] == "clip"]
    assert charge["usd"] == pytest.approx(2 * 4 * FAST_720P) == clip.cost_usd and charge["seconds"] == 8
    manifest = json.loads((pipeline.folder(prod.id) / "manifest.json").read_text())
    assert manifest["clips"][0]["qc"]["chosen_sample"] == 2
    assert manifest["clips"][0]["cost_usd"] == pytest.approx(0.8)
    [report] = service.status(settings, prod.id, store).productions
    assert report.clips[0].qc["chosen_sample"] == 2
    events = [e for e in store.recent_events(prod.id, 100) if e["kind"] in ("sample_chosen", "qc_flagged")]
    assert [e["kind"] for e in events] == ["sample_chosen"]  # the clip that was cut in is clean: not flagged


def test_the_estimate_and_both_budgets_count_every_sample(real_env, vertex_project, fake):
    from reelcrew import service
    from reelcrew.errors import BudgetError
    from reelcrew.results import ApprovalPolicy
    from reelcrew.store import open_ledger

    one = load_settings(scenes=2, clip_seconds=4)
    three = load_settings(scenes=2, clip_seconds=4, veo3_sample_count=3)
    store = open_ledger(three)
    pipeline, prod = _production(three, store, "a kettle on a stove")
    pipeline.run([prod], until="prompts")
    single, triple = service.estimate(one, [prod], store), service.estimate(three, [prod], store)
    assert (triple.clips, triple.samples_per_clip, triple.price_column) == (2, 3, "audio")
    assert triple.video_usd == pytest.approx(3 * single.video_usd) == pytest.approx(3 * 2 * 4 * FAST_720P)
    assert triple.seconds == 3 * 2 * 4
    # --budget-usd: the approval refuses what one sample would fit
    with pytest.raises(BudgetError, match="2 clips, 24 s of video"):
        service.approve(three, triple, ApprovalPolicy(yes=True, budget_usd=single.usd + 0.01), store, (prod.id,))
    # the daily budget, at each claim: one 4 s clip of 3 samples ($1.20) does not fit in $1.00, one sample would
    capped = load_settings(scenes=2, clip_seconds=4, veo3_sample_count=3, reelcrew_daily_budget_usd=1.0)
    pipeline.settings = capped
    pipeline.run([prod], until="clips")
    assert [c.status for c in store.production_clips(prod.id)] == [ClipStatus.paused] * 2
    assert "daily budget $1.00 reached" in store.production_clips(prod.id)[0].error
    assert fake.submit_attempts == 0 and [r for r in store.cost_rows() if r["kind"] == "clip"] == []


def test_the_gemini_api_refuses_two_samples_before_any_request(real_env, fake):
    from reelcrew.errors import ConfigError
    from reelcrew.pipeline import Pipeline
    from reelcrew.store import open_ledger

    settings = load_settings(scenes=2, veo3_sample_count=2)
    store = open_ledger(settings)
    pipeline = Pipeline(settings, store)
    prods = pipeline.plan(["how tea is made"])
    with pytest.raises(ConfigError, match="sample_count=2 is refused on the gemini backend") as info:
        pipeline.run(prods)
    assert "VEO3_SAMPLE_COUNT" in info.value.fix.upper() and "Vertex AI" in info.value.fix
    assert fake.requests == [] and store.stage(prods[0].id, "script") is None  # nothing reached the fake


def test_withheld_samples_are_not_billed_and_all_withheld_is_free(real_env, vertex_project, fake, tmp_path):
    from tests.video_helpers import stack

    fake.script.filtered_samples = {"HALFSAFE": 1, "NONESAFE": 2}
    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_sample_count=2, veo3_keep_samples=False)
    jobs = []
    from reelcrew.video.generator import ClipJob
    from reelcrew.video.registry import veo_options

    for index, words in enumerate(("HALFSAFE a teapot", "NONESAFE a teacup"), start=1):
        prompt = VideoPrompt(index=index, scene_index=index, prompt=words, duration=4)
        clip = store.ensure_clip("p1", prompt, settings.veo3_model, options=veo_options(settings))
        jobs.append(ClipJob(clip.key, out / "clips" / f"clip-{index:02d}.mp4"))
    half, none = gen.run(jobs)
    assert half.status == ClipStatus.done and none.status == ClipStatus.filtered
    assert half.qc["chosen_sample"] == 1 and half.qc["samples_filtered"] == 1 and len(half.qc["samples"]) == 1
    assert "not be charged" in half.qc["withheld"] and "1 more withheld" in half.qc["why"]
    charges = {row["clip_key"]: row for row in store.cost_rows() if row["kind"] == "clip"}
    assert set(charges) == {half.key}  # the one where nothing was made costs nothing
    assert charges[half.key]["usd"] == pytest.approx(1 * 4 * FAST_720P) and charges[half.key]["seconds"] == 4
    assert sorted(p.name for p in (out / "clips").iterdir()) == ["clip-01.mp4"]  # VEO3_KEEP_SAMPLES=false


def test_silent_clips_on_vertex_are_priced_and_billed_video_only(real_env, vertex_project, fake, tmp_path):
    from reelcrew import service
    from reelcrew.store import open_ledger
    from reelcrew.video.generator import ClipJob
    from reelcrew.video.registry import veo_options
    from tests.video_helpers import stack

    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_generate_audio=False, scenes=1, clip_seconds=4)
    assert settings.price_per_second(settings.veo3_model, "720p") == FAST_720P_VIDEO_ONLY
    pipeline, prod = _production(settings, open_ledger(settings), "a lighthouse at dusk")
    pipeline.run([prod], until="prompts")
    estimate = service.estimate(settings, [prod], pipeline.store)
    assert estimate.price_column == "video_only" and estimate.video_usd == pytest.approx(4 * FAST_720P_VIDEO_ONLY)
    prompt = VideoPrompt(index=1, scene_index=1, prompt="a lighthouse at dusk, waves below", duration=4)
    clip = store.ensure_clip("p1", prompt, settings.veo3_model, options=veo_options(settings))
    [done] = gen.run([ClipJob(clip.key, out / "clip-01.mp4")])
    assert done.status == ClipStatus.done and fake.ops[done.operation_name]["params"]["generateAudio"] is False
    [charge] = [row for row in store.cost_rows() if row["kind"] == "clip"]
    assert charge["usd"] == pytest.approx(4 * FAST_720P_VIDEO_ONLY)
    # with sound, the same clip is priced with audio
    assert load_settings().price_per_second(settings.veo3_model, "720p") == FAST_720P


def test_a_price_list_without_the_video_only_column_still_loads_and_prices_silent_clips_with_audio(
        vertex_project, caplog):
    # the price list of a config/pipeline.yaml edited before the column existed (a user's file is laid over the
    # shipped one, which has the column, so only a list that replaces the shipped one lacks it)
    old = {"veo-3.1-fast-generate-001": {"720p": 0.11, "1080p": 0.13}}
    settings = load_settings(veo3_generate_audio=False)
    settings.prices = old
    with caplog.at_level(logging.WARNING, logger="reelcrew.video"):
        assert settings.price_per_second("veo-3.1-fast-generate-001", "1080p") == 0.13
    assert "prices.veo-3.1-fast-generate-001.1080p_video_only" in caplog.text
    settings.veo3_generate_audio = True
    assert settings.price_per_second("veo-3.1-fast-generate-001", "720p") == 0.11
    # the Gemini API always makes sound: its price never takes the video-only column
    gemini = load_settings(google_genai_use_vertexai=False, gemini_api_key="k-not-secret")
    assert gemini.price_per_second("veo-3.1-fast-generate-001", "720p") == FAST_720P


def test_mock_mode_makes_distinct_samples_and_keeps_the_others_beside_the_clip(tmp_path):
    from reelcrew.video.generator import ClipJob
    from reelcrew.video.registry import veo_options
    from tests.video_helpers import stack

    out = tmp_path / "out"
    settings, store, gen = stack(out, veo3_mock_mode=True, veo3_sample_count=2, polling_interval=0.05)
    prompt = VideoPrompt(index=1, scene_index=1, prompt="a red fox in snow. It runs to the trees", duration=4)
    clip = store.ensure_clip("p1", prompt, settings.veo3_model, rehearsal=True, options=veo_options(settings))
    assert clip.key != prompt.clip_key(settings.veo3_model, rehearsal=True)  # two samples: another request
    [done] = gen.run([ClipJob(clip.key, out / "clips" / "clip-01.mp4")])
    assert done.status == ClipStatus.done, done.error
    assert done.qc["chosen_sample"] == 1 and [s["state"] for s in done.qc["samples"]] == ["clean", "clean"]
    other = out / "clips" / "clip-01.sample-2.mp4"
    assert _digest(other) != _digest(out / "clips" / "clip-01.mp4")  # two different videos, as Vertex makes
    assert done.cost_usd == 0.0


def test_the_estimate_before_approval_names_the_samples_and_the_price_column(real_env, vertex_project, fake):
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "VEO3_SAMPLE_COUNT": "2", "VEO3_GENERATE_AUDIO": "false", "CLIP_SECONDS": "4"}
    result = subprocess.run([sys.executable, str(ROOT / "run_integrated_pipeline.py"), "--topic", "tea", "--scenes",
                             "2"], capture_output=True, text=True, timeout=300, env=env,
                            stdin=subprocess.DEVNULL)  # no terminal to say yes on: nothing is submitted
    assert result.returncode == 1, result.stderr
    # 2 clips x 2 samples x 4 s x $0.08 (Vertex, silent)
    assert "$1.28 for 2 clip(s) × 2 samples, 16 s of video at the video-only price" in " ".join(result.stderr.split())
    assert fake.submit_attempts == 0


def test_a_mock_production_with_samples_cuts_the_chosen_ones_and_prune_removes_the_others_with_them():
    from reelcrew.pipeline import Pipeline
    from reelcrew.service.backup import prune
    from reelcrew.store import open_ledger

    settings = load_settings(scenes=2, clip_seconds=4, reelcrew_llm="mock", veo3_mock_mode=True, veo3_sample_count=2)
    store = open_ledger(settings)
    pipeline = Pipeline(settings, store)
    [prod] = pipeline.plan(["how tea is made"])
    pipeline.run([prod])
    assert store.production(prod.id).status.value == "done"
    clips = pipeline.folder(prod.id) / "clips"
    assert sorted(p.name for p in clips.glob("*.mp4")) == ["clip-01.mp4", "clip-01.sample-2.mp4", "clip-02.mp4",
                                                           "clip-02.sample-2.mp4"]
    from reelcrew.media import probe

    assert probe(pipeline.folder(prod.id) / "final.mp4").duration == pytest.approx(8, abs=0.2)  # 2 clips, not 4
    report = prune(settings, store, older_than=0)
    assert {p.name for p in report.removed} >= {"clip-01.sample-2.mp4", "clip-02.sample-2.mp4"}
    assert not list(clips.glob("*.mp4")) and (pipeline.folder(prod.id) / "final.mp4").exists()


def test_a_request_of_two_samples_reattached_after_a_crash_is_fetched_and_billed_for_both(real_env, vertex_project,
                                                                                        fake, tmp_path):
    from reelcrew.video.backends import make_backend
    from reelcrew.video.generator import ClipJob
    from reelcrew.video.registry import veo_options
    from tests.video_helpers import stack

    out = tmp_path / "out"
    two, store, _ = stack(out, veo3_sample_count=2)
    prompt = VideoPrompt(index=1, scene_index=1, prompt="a kettle on a stove, steam rising", duration=4)
    clip = store.ensure_clip("p1", prompt, two.veo3_model, options=veo_options(two))
    name = make_backend(two).submit(clip.prompt, clip.model)  # the paid request; then the process died
    store.record_submit(clip.key, "host:1:dead", name, 1, False, 60)
    store.release_clip(clip.key, "host:1:dead", ClipStatus.submitted)
    one, store, gen = stack(out)  # the next run's settings say one sample: the operation made two all the same
    [done] = gen.run([ClipJob(clip.key, out / "clips" / "clip-01.mp4")])
    assert done.status == ClipStatus.done and fake.accepted == 1  # re-attached, never submitted again
    assert len(done.qc["samples"]) == 2 and (out / "clips" / "clip-01.sample-2.mp4").exists()
    [charge] = [row for row in store.cost_rows() if row["kind"] == "clip"]
    assert charge["usd"] == pytest.approx(2 * 4 * FAST_720P)


def test_the_choice_prefers_clean_then_unchecked_then_the_least_bad_and_never_an_invalid_sample(tmp_path):
    from reelcrew.media import MediaError
    from reelcrew.video.qc import QualityReport
    from reelcrew.video.samples import Sample, choose

    def flagged(black: float) -> QualityReport:
        return QualityReport(ok=False, problems=[f"black for {black} of 8.0 s"], black_seconds=black, duration=8)

    clean = QualityReport(ok=True, duration=8)
    part = tmp_path / "x"
    assert choose([Sample(1, part, report=flagged(6)), Sample(2, part, report=flagged(4)),
                   Sample(3, part, report=flagged(5))]).chosen.number == 2
    assert choose([Sample(1, part, report=flagged(4)), Sample(2, part), Sample(3, part, report=clean),
                   Sample(4, part, report=clean)]).chosen.number == 3  # the first clean one
    unchecked = choose([Sample(1, part, report=flagged(4)), Sample(2, part)])
    assert unchecked.chosen.number == 2 and "could not run" in unchecked.why
    least_bad = choose([Sample(1, part, invalid="invalid: duration 3.00s, asked for 8s"),
                        Sample(2, part, report=flagged(7))], filtered=1)
    assert least_bad.chosen.number == 2 and "no sample is clean" in least_bad.why
    assert "1 more withheld by Veo's safety filter (not billed)" in least_bad.why
    with pytest.raises(MediaError, match="no sample is valid"):
        choose([Sample(1, part, invalid="invalid: does not decode")])
