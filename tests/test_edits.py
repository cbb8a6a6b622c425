"""Edited stage files (script.json, seo.json, prompts.json) are validated, adopted and re-cut, never paid again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import srt
from PIL import Image

from reelcrew import mock_writer, service
from reelcrew.assemble.captions import caption_position, draw_text_image, load_font
from reelcrew.assemble.fonts import find_font
from reelcrew.errors import InputError
from reelcrew.models import ClipStatus, Production, PromptList, Script, SeoPackage
from reelcrew.settings import load_settings
from reelcrew.store import Store
from tests.test_assembly import frame
from tests.test_pipeline_cli import cli, summary
from tests.video_helpers import ledger

MOCK = {"VEO3_MOCK_MODE": "true", "REELCREW_LLM": "mock"}  # assemble has no --mock: the mode comes from here


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def edit_events(pid: str) -> list[dict]:
    return [e for e in ledger().recent_events(pid, limit=200) if e["kind"] == "edit"]


def burned_in(video: Path, t: float, text: str, captions: list[str], style) -> float:
    """Correlation of the frame at `t`, where the renderer puts a static caption, with the rendering of `text`
    (the font chosen as the cut chooses it, for all the production's captions)."""
    pad = round(style.size * 0.3)
    font = load_font(find_font("".join(captions), style.font), style.size)
    expected = np.asarray(draw_text_image(text, font, style, style.stroke_width, pad).convert("L")).astype(int)
    x, y = caption_position(Image.new("L", expected.shape[::-1]), 1280, 720, style)
    region = frame(video, t).mean(axis=2)[y:y + expected.shape[0], x:x + expected.shape[1]]
    return float(np.corrcoef(region.ravel(), expected.ravel())[0, 1])


# -- through the CLI ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_edited_subtitle_narration_and_title_are_in_the_recut_frames_srt_and_metadata(tmp_path):
    first = cli("--mock", "--topic", "how tea is made", "--scenes", "2", "--json", "-o", str(tmp_path / "o"))
    assert first.returncode == 0, first.stderr
    prod = summary(first)[0]
    folder = Path(prod["folder"])
    old_caption = json.loads((folder / "prompts.json").read_text())["prompts"][0]["subtitle"]
    clips_before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (folder / "clips").glob("*.mp4")}
    rows_before = {c.key: c.status for c in ledger().production_clips(prod["id"])}

    new_caption, new_narration, new_title = "Steam rises from the cup", "Now you know how tea is made.", "Tea, edited"
    edit(folder / "prompts.json", lambda d: d["prompts"][0].update(subtitle=new_caption))
    edit(folder / "script.json", lambda d: d["scenes"][1].update(narration=new_narration))
    edit(folder / "seo.json", lambda d: d.update(title=new_title))
    recut = cli("assemble", prod["id"], "-o", str(tmp_path / "o"), env=MOCK)
    assert recut.returncode == 0, recut.stderr
    assert "adopted the edited seo.json: title" in recut.stderr

    cues = [s.content.replace("\n", " ") for s in srt.parse((folder / "final.srt").read_text(encoding="utf-8"))]
    assert cues == [new_caption, new_narration]  # the narration became scene 2's subtitle, as the Maker does
    style = load_settings().subtitles
    captions = [new_caption, new_narration]
    assert burned_in(folder / "final.mp4", 4, new_caption, captions, style) > 0.8  # measured 0.996
    assert burned_in(folder / "final.mp4", 4, old_caption, captions, style) < 0.5  # measured 0.07
    assert json.loads((folder / "metadata.json").read_text())["seo"]["title"] == new_title
    assert json.loads((folder / "prompts.json").read_text())["prompts"][1]["subtitle"] == new_narration

    events = {e["stage"]: e["message"] for e in edit_events(prod["id"])}
    assert events == {"script": "edited script.json: scenes.1.narration", "seo": "edited seo.json: title",
                      "prompts": "edited prompts.json: prompts.0.subtitle, prompts.1.subtitle"}
    # a re-cut: the same clips, untouched, and nothing new to generate
    assert {c.key: c.status for c in ledger().production_clips(prod["id"])} == rows_before
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (folder / "clips").glob("*.mp4")} == clips_before
    again = cli("assemble", prod["id"], "-o", str(tmp_path / "o"), env=MOCK)
    assert again.returncode == 0 and "adopted" not in again.stderr and len(edit_events(prod["id"])) == 3


@pytest.mark.slow
def test_an_invalid_edit_exits_2_naming_the_file_and_field_and_changes_nothing(tmp_path):
    out = tmp_path / "o"
    prod = summary(cli("--mock", "--topic", "tea", "--scenes", "2", "--json", "-o", str(out)))[0]
    folder = Path(prod["folder"])
    metadata = (folder / "metadata.json").read_bytes()
    edit(folder / "seo.json", lambda d: d.update(title="A good new title"))  # valid, but not adopted alone
    cases = [
        ("seo.json", lambda d: d.update(title="x" * 101), "field title: String should have at most 100 characters"),
        ("script.json", lambda d: d["scenes"].pop(), "scenes: expected exactly 2 scenes, got 1"),
        ("prompts.json", lambda d: d["prompts"][1].update(duration=5), "prompts[1].duration"),
        ("prompts.json", lambda d: d["prompts"][0].pop("prompt"), "field prompts.0.prompt: Field required"),
        ("prompts.json", lambda d: d["prompts"][0].update(subtitle="word " * 40), "field prompts.0.subtitle: 199"),
    ]
    for name, change, needle in cases:
        original = (folder / name).read_text(encoding="utf-8")
        edit(folder / name, change)
        result = cli("assemble", prod["id"], "-o", str(out), env=MOCK)
        assert result.returncode == 2, (name, result.stderr)
        assert f"{folder / name}" in result.stderr and needle in result.stderr, result.stderr
        assert "nothing was changed" in result.stderr
        (folder / name).write_text(original, encoding="utf-8")
    (folder / "prompts.json").write_text('{"prompts": [', encoding="utf-8")
    result = cli("assemble", prod["id"], "-o", str(out), env=MOCK)
    assert result.returncode == 2 and "prompts.json is not valid JSON" in result.stderr
    status = json.loads(cli("status", prod["id"], "--json", "-o", str(out)).stdout)["productions"][0]
    assert status["status"] == "done" and status["final"]  # the final was not dropped
    assert (folder / "metadata.json").read_bytes() == metadata
    assert SeoPackage.model_validate_json(ledger().stage(prod["id"], "seo") or "").title != "A good new title"
    assert edit_events(prod["id"]) == []


@pytest.mark.slow
def test_prompts_edited_before_any_clip_are_what_the_next_run_generates(tmp_path):
    out = tmp_path / "o"
    args = ("--mock", "--topic", "tea", "--scenes", "2", "--json", "-o", str(out))
    prod = summary(cli(*args, "--until", "prompts"))[0]
    folder = Path(prod["folder"])
    edit(folder / "prompts.json", lambda d: d["prompts"][0].update(prompt="a slow pan over misty tea terraces",
                                                                   subtitle="Misty terraces"))
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["clips"][0]["prompt"]["prompt"] == "a slow pan over misty tea terraces"
    assert next(srt.parse((folder / "final.srt").read_text())).content == "Misty terraces"
    assert [e["message"] for e in edit_events(prod["id"])] == [
        "edited prompts.json: prompts.0.prompt, prompts.0.subtitle"]


@pytest.mark.slow
def test_resume_adopts_edits_and_makes_a_clip_paused_before_its_submit_from_the_edited_prompt(real_env, fake,
                                                                                               tmp_path):
    first = cli("--topic", "tea", "--scenes", "2", "--yes", "--json", env={"REELCREW_DAILY_BUDGET_USD": "0.80"})
    prod = summary(first)[0]
    assert first.returncode == 1 and prod["status"] == "paused" and fake.accepted == 1
    folder = Path(prod["folder"])
    paused = next(c for c in ledger().production_clips(prod["id"]) if c.status == ClipStatus.paused)
    edit(folder / "prompts.json", lambda d: d["prompts"][paused.index - 1].update(prompt="tea leaves drying in sun"))
    edit(folder / "script.json", lambda d: d["scenes"][0].update(narration="Tea starts as a leaf."))
    resumed = cli("resume", "--yes", "--json", env={"REELCREW_DAILY_BUDGET_USD": "10"})
    assert resumed.returncode == 0, resumed.stderr
    assert fake.accepted == 2  # the paused clip, made once, from the edited prompt
    clips = json.loads((folder / "manifest.json").read_text())["clips"]
    assert clips[paused.index - 1]["prompt"]["prompt"] == "tea leaves drying in sun"
    assert next(srt.parse((folder / "final.srt").read_text())).content == "Tea starts as a leaf."


@pytest.mark.slow
def test_real_recut_after_edits_submits_nothing_and_a_paid_clip_is_made_anew_only_by_retry(real_env, fake, tmp_path):
    first = cli("--topic", "tea", "--scenes", "2", "--yes", "--json")
    assert first.returncode == 0, first.stderr
    prod = summary(first)[0]
    folder = Path(prod["folder"])
    assert fake.accepted == 2
    edit(folder / "prompts.json", lambda d: d["prompts"][1].update(prompt="a wide shot of tea fields at dawn",
                                                                   subtitle="Dawn over the fields"))
    edit(folder / "seo.json", lambda d: d.update(title="Tea at dawn"))
    recut = cli("assemble", prod["id"])
    assert recut.returncode == 0, recut.stderr
    assert fake.accepted == 2 and fake.submit_attempts == 2  # the re-cut paid nothing
    assert f"reelcrew retry {prod['id']} --clip 2" in recut.stderr and "already made and paid ($0.80)" in recut.stderr
    assert [s.content for s in srt.parse((folder / "final.srt").read_text())][-1] == "Dawn over the fields"
    assert json.loads((folder / "metadata.json").read_text())["seo"]["title"] == "Tea at dawn"
    assert "wide shot" not in (ledger().stage(prod["id"], "prompts") or "")  # held back, still in the file
    assert "wide shot" in (folder / "prompts.json").read_text()

    remade = cli("retry", prod["id"], "--clip", "2", "--yes", "--json")
    assert remade.returncode == 0, remade.stderr
    assert fake.accepted == 3  # the one new clip the user asked for
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["clips"][1]["prompt"]["prompt"] == "a wide shot of tea fields at dawn"
    assert json.loads(cli("cost", "--json").stdout)["total_usd"] == pytest.approx(3 * 0.80)


# -- the rules, on a ledger built by hand -----------------------------------------------------------------
@pytest.fixture
def written(tmp_path):
    """A production with its three stages in a ledger and in its folder, clip 1 made, clip 2 not submitted."""
    settings = load_settings(reelcrew_output_dir=tmp_path / "o", veo3_mock_mode=True, reelcrew_llm="mock")
    store = Store(f"sqlite:///{tmp_path / 'ledger.db'}")
    prod = Production(id="tea-1", topic="tea", language="en", scenes=2, aspect_ratio="16:9", style="cinematic",
                      folder=str(tmp_path / "o" / "tea-1"))
    store.upsert_production(prod)
    script = mock_writer.write_script("tea", "en", 2, settings.clip_seconds, "cinematic")
    stages = {"script": script, "seo": mock_writer.write_seo(script, "tea"),
              "prompts": mock_writer.write_prompts(script, "cinematic", "16:9", "720p")}
    folder = Path(prod.folder or "")
    folder.mkdir(parents=True)
    for stage, value in stages.items():
        store.save_stage(prod.id, stage, value.model_dump_json(), llm_answers=1)
        (folder / f"{stage}.json").write_text(value.model_dump_json(indent=2))
    prompts = stages["prompts"]
    assert isinstance(prompts, PromptList)
    made = store.ensure_clip(prod.id, prompts.prompts[0], settings.veo3_model)
    store.update_clip(made.key, status=ClipStatus.done, operation_name="op-1", cost_usd=0.8)
    store.ensure_clip(prod.id, prompts.prompts[1], settings.veo3_model)
    return settings, store, prod, folder


def adopt(written, **kwargs) -> list[str]:
    settings, store, prod, _ = written
    lines: list[str] = []
    service.adopt_edits(settings, [prod], store, lines.append, **kwargs)
    return lines


def saved(store: Store, stage: str, model):
    return model.model_validate_json(store.stage("tea-1", stage))


def test_a_subtitle_the_user_wrote_wins_over_an_edited_narration(written):
    _, store, _, folder = written
    edit(folder / "script.json", lambda d: [s.update(narration=f"new narration {s['index']}") for s in d["scenes"]])
    edit(folder / "prompts.json", lambda d: d["prompts"][0].update(subtitle="my own caption"))
    adopt(written)
    assert [p.subtitle for p in saved(store, "prompts", PromptList).prompts] == ["my own caption", "new narration 2"]
    assert [s.narration for s in saved(store, "script", Script).scenes] == ["new narration 1", "new narration 2"]
    assert store.llm_answers("tea-1") == 3  # the writers' answers still count


def test_a_changed_request_is_adopted_for_an_unsubmitted_clip_and_held_for_a_made_one(written):
    _, store, _, folder = written
    edit(folder / "prompts.json", lambda d: [p.update(prompt=f"edited shot {p['index']}") for p in d["prompts"]])
    lines = adopt(written)
    assert [p.prompt for p in saved(store, "prompts", PromptList).prompts][1] == "edited shot 2"
    assert saved(store, "prompts", PromptList).prompts[0].prompt != "edited shot 1"
    assert any("clip 1 is already made and paid ($0.80)" in line and "`reelcrew retry tea-1 --clip 1`" in line
               for line in lines)
    adopt(written, allow_new_clips={("tea-1", 1)})  # what `reelcrew retry tea-1 --clip 1` does
    assert saved(store, "prompts", PromptList).prompts[0].prompt == "edited shot 1"


def test_a_too_long_narration_is_refused_and_nothing_is_adopted(written):
    _, store, _, folder = written
    before = {stage: store.stage("tea-1", stage) for stage in ("script", "seo", "prompts")}
    edit(folder / "seo.json", lambda d: d.update(title="fine"))
    edit(folder / "script.json", lambda d: d["scenes"][0].update(narration="清晨" * 50))
    with pytest.raises(InputError, match=r"script\.json: field scenes\.0\.narration: 200 characters"):
        adopt(written)
    assert {stage: store.stage("tea-1", stage) for stage in before} == before
