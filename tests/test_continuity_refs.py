"""Continuity modes `references` and `extend` (issue 15): through the real google-genai SDK against the fake Google,
which checks the wire fields (`referenceImages[]`, an extension's `video`), and in mock mode."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from PIL import Image

from reelcrew import service
from reelcrew.errors import ConfigError
from reelcrew.media import probe
from reelcrew.results import ApprovalPolicy
from reelcrew.settings import load_settings
from reelcrew.store import open_ledger
from reelcrew.video import continuity_refs

TOPIC = "a day of a cat"
YES = ApprovalPolicy(yes=True)


def image(path, colour, kind="PNG"):
    Image.new("RGB", (64, 96), colour).save(path, kind)
    return path


def run(settings, until="final", topic=TOPIC):
    store = open_ledger(settings)
    prods = service.plan(settings, [topic], store)
    service.run(settings, prods, until, policy=YES, store=store)
    return store, store.production(prods[0].id)


def folder(store, prod):
    from pathlib import Path

    return Path(store.production(prod.id).folder)


def frame(path, at: str):
    """One frame's RGB image (`at`: seconds from the start, or "last")."""
    import subprocess

    from reelcrew.media import ffmpeg_exe

    where = ["-sseof", "-0.05"] if at == "last" else ["-ss", at]
    data = subprocess.run([ffmpeg_exe(), "-v", "error", *where, "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                           "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    info = probe(path)
    return Image.frombytes("RGB", (info.width, info.height), data[: info.width * info.height * 3])


# -- references -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["gemini", "vertex"])
def test_every_clip_request_carries_the_reference_images_as_assets(backend, request, fake, real_env, tmp_path):
    if backend == "vertex":
        request.getfixturevalue("vertex_project")
    cat = image(tmp_path / "cat.png", (200, 40, 40))
    girl = image(tmp_path / "girl.jpg", (40, 40, 200), "JPEG")
    settings = load_settings(scenes=2, continuity="references", reference_images=[cat, girl])
    store, prod = run(settings, until="clips")
    shas = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (cat, girl)]
    assert [c.status.value for c in store.production_clips(prod.id)] == ["done", "done"]
    assert len(fake.continuity) == 2
    for sent in fake.continuity:  # what reached the fake through the SDK: both images, in order, as assets
        assert [(r["sha256"], r["type"]) for r in sent["reference_images"]] == [(shas[0], "asset"), (shas[1], "asset")]
        assert [r["mime"] for r in sent["reference_images"]] == ["image/png", "image/jpeg"]
    # recorded with the production, copied into its folder: resume and retry send the same images
    assert [r["sha256"] for r in store.production_references(prod.id)] == shas
    assert sorted(p.name.split(".")[0] for p in (folder(store, prod) / "references").iterdir()) == sorted(shas)
    # the images are part of the request, so of every clip's key and of the production's id
    plain = load_settings(scenes=2)
    assert prod.id not in {p.id for p in service.plan(plain, [TOPIC], store)}
    options = continuity_refs.clip_options(settings, store, prod.id, [c.prompt for c in
                                                                      store.production_clips(prod.id)],
                                           settings.veo3_model, False)
    assert all(o["reference_images"] == tuple(shas) for o in options.values())


def test_a_4_second_clip_with_references_is_refused_before_any_spend(fake, real_env, tmp_path):
    cat = image(tmp_path / "cat.png", (200, 40, 40))
    settings = load_settings(scenes=2, clip_seconds=4, continuity="references", reference_images=[cat])
    with pytest.raises(ConfigError) as refused:  # the setting: refused at the start
        run(settings)
    assert "8 s" in refused.value.problem and "clip_seconds" in refused.value.fix
    # a written prompt a person shortened to 4 s: refused when its clips are planned, before any submit
    settings = load_settings(scenes=2, continuity="references", reference_images=[cat])
    store, prod = run(settings, until="prompts")
    prompts = json.loads(store.stage(prod.id, "prompts"))
    prompts["prompts"][1]["duration"] = 4
    store.replace_stage(prod.id, "prompts", json.dumps(prompts))
    with pytest.raises(ConfigError) as refused:
        service.run(settings, [store.production(prod.id)], "final", policy=YES, store=store)
    assert "clip 2 is 4 s long" in refused.value.problem and "nothing was submitted" in refused.value.problem
    assert fake.submit_attempts == 0 and store.cost_rows() == []


def test_reference_images_that_veo_would_refuse_are_refused_naming_the_fix(tmp_path):
    images = [image(tmp_path / f"{n}.png", (n * 50, 0, 0)) for n in range(4)]
    (tmp_path / "notes.txt").write_text("not an image")
    cases = [([*images], "at most 3"), ([tmp_path / "notes.txt"], "is not an image"),
             ([tmp_path / "missing.png"], "cannot be read")]
    for paths, words in cases:
        settings = load_settings(scenes=2, reelcrew_llm="mock", veo3_mock_mode=True, continuity="references",
                                 reference_images=paths)
        with pytest.raises(ConfigError) as refused:
            run(settings)
        assert words in refused.value.problem + refused.value.fix
    # models that take neither mode, and a 1080p extension, are refused before anything is written
    for overrides, words in [({"continuity": "references", "veo3_model": "veo-3.1-lite-generate-001",
                               "reference_images": images[:1]}, "does not take continuity references"),
                             ({"continuity": "extend", "veo3_model": "veo-3.1-lite-generate-001"},
                              "does not take continuity extend"),
                             ({"continuity": "extend", "resolution": "1080p"}, "720p")]:
        settings = load_settings(scenes=2, reelcrew_llm="mock", veo3_mock_mode=True, **overrides)
        with pytest.raises(ConfigError) as refused:
            run(settings)
        assert words in refused.value.problem


def test_a_folder_per_production_gives_each_topic_its_own_images_in_mock_mode(tmp_path):
    refs = tmp_path / "refs"
    (refs / "a-day-of-a-cat").mkdir(parents=True)
    image(refs / "a-day-of-a-cat" / "cat.png", (250, 10, 10))
    settings = load_settings(scenes=1, reelcrew_llm="mock", veo3_mock_mode=True, continuity="references",
                             reference_images_dir=refs)
    store, prod = run(settings, until="clips")
    [clip] = store.production_clips(prod.id)
    assert clip.status.value == "done"
    picture = frame(clip.path, "1")  # the mock shows the cast small in the top right corner
    red, green, _ = picture.getpixel((picture.width - 100, 60))
    assert red > 200 and green < 50
    with pytest.raises(ConfigError) as refused:  # a topic without its folder
        run(settings, topic="how tea is made")
    assert "how-tea-is-made" in refused.value.fix


# -- extend ---------------------------------------------------------------------------------------------------
def test_clip_two_extends_clip_ones_video_and_the_final_is_one_continuous_shot(fake, real_env):
    settings = load_settings(scenes=2, continuity="extend")
    store, prod = run(settings)
    clips = store.production_clips(prod.id)
    assert [c.status.value for c in clips] == ["done", "done"] and prod.status.value == "done"
    first_file = next(op["file"] for op in fake.ops.values() if op["prompt"] == clips[0].prompt.prompt)
    assert "video" not in fake.continuity[0]  # clip 1: text to video
    assert fake.continuity[1]["video"] == {"uri": clips[0].video_uri, "from": first_file}  # clip 2: its uri
    # the extension answered with the whole 15 s shot: the scene keeps its new 7 s, the whole is kept beside it
    assert [round(c.duration) for c in clips] == [8, 7]
    assert round(probe(continuity_refs.full_path(folder(store, prod) / "clips" / "clip-02.mp4")).duration) == 15
    assert round(probe(folder(store, prod) / "final.mp4").duration) == 15
    # the cost ledger bills the extension as its whole output by default (extend_billing: output)
    rows = {r["clip_key"]: r for r in store.cost_rows() if r["kind"] == "clip"}
    assert [rows[c.key]["seconds"] for c in clips] == [8, 15]
    assert rows[clips[1].key]["usd"] == pytest.approx(15 * 0.10)
    # the chain is in the keys: clip 2's key covers clip 1's
    options = continuity_refs.clip_options(settings, store, prod.id, [c.prompt for c in clips], settings.veo3_model,
                                           False)
    assert options[2]["source_video"] == f"extend:{clips[0].key}" and "source_video" not in options[1]


def test_on_vertex_an_extension_sends_the_previous_videos_bytes(fake, real_env, vertex_project):
    settings = load_settings(scenes=2, continuity="extend")
    store, prod = run(settings, until="clips")
    clips = store.production_clips(prod.id)
    first_file = next(op["file"] for op in fake.ops.values() if op["prompt"] == clips[0].prompt.prompt)
    assert fake.continuity[1]["video"]["from"] == first_file
    assert [round(c.duration) for c in clips] == [8, 7]


def test_a_video_the_gemini_api_deleted_is_not_extended_and_the_error_names_the_fix(fake, real_env):
    settings = load_settings(scenes=2, continuity="extend")
    store, prod = run(settings, until="clips")
    first, second = store.production_clips(prod.id)
    store.update_clip(second.key, status="failed")
    store.reset_clip(second.key)  # clip 2 still to make (as after a crash before its submit)
    store.update_clip(first.key, submitted_at=time.time() - 3 * 24 * 3600)  # made three days ago
    accepted = fake.accepted
    service.run(settings, [store.production(prod.id)], "clips", policy=YES, store=store)
    again = store.clip(second.key)
    assert again.status.value == "failed" and "more than 2 days ago" in again.error
    assert f"reelcrew retry {prod.id} --clip 1" in again.error
    assert fake.accepted == accepted  # nothing was paid


def test_mock_extend_continues_the_picture_and_the_estimate_prices_extensions(tmp_path):
    settings = load_settings(scenes=2, reelcrew_llm="mock", veo3_mock_mode=True, continuity="extend")
    store, prod = run(settings)
    first, second = store.production_clips(prod.id)
    assert [round(first.duration), round(second.duration)] == [8, 7]
    end, start = frame(first.path, "last"), frame(second.path, "0")
    assert end.getpixel((20, 20)) == pytest.approx(start.getpixel((20, 20)), abs=6)  # same colour where it ended
    # priced before approval: scene N of an extended shot bills 8 + 7(N-1) s (output) or 7 s (added)
    paid = load_settings(scenes=3, continuity="extend", gemini_api_key="k")
    [plan] = service.plan(paid, ["how tea is made"], store)
    assert service.estimate(paid, [plan], store).video_usd == pytest.approx((8 + 15 + 22) * 0.10)
    cheaper = paid.model_copy(update={"extend_billing": "added"})
    assert service.estimate(cheaper, [plan], store).video_usd == pytest.approx((8 + 7 + 7) * 0.10)


def test_ledger_import_brings_the_reference_images_along(tmp_path):
    from reelcrew.store import Store

    cat = image(tmp_path / "cat.png", (200, 40, 40))
    settings = load_settings(scenes=1, reelcrew_llm="mock", veo3_mock_mode=True, continuity="references",
                             reference_images=[cat])
    store = open_ledger(settings)
    [prod] = service.plan(settings, [TOPIC], store)
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    assert other.import_ledger(store.url)["reference images"] == 1
    assert other.production_references(prod.id) == store.production_references(prod.id)


def test_a_resume_without_the_flags_still_sends_the_recorded_images(tmp_path):
    cat = image(tmp_path / "cat.png", (250, 10, 10))
    settings = load_settings(scenes=1, reelcrew_llm="mock", veo3_mock_mode=True, continuity="references",
                             reference_images=[cat])
    store, prod = run(settings, until="prompts")
    cat.unlink()  # the original is gone: the production's copy is what is sent
    plain = load_settings(scenes=1, reelcrew_llm="mock", veo3_mock_mode=True)  # `reelcrew resume`: no flags
    service.run(plain, [store.production(prod.id)], "clips", policy=YES, store=store)
    [clip] = store.production_clips(prod.id)
    red, green, _ = frame(clip.path, "1").getpixel((frame(clip.path, "1").width - 100, 60))
    assert clip.status.value == "done" and red > 200 and green < 50
