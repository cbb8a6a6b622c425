"""The pre-flight through the CLI: every bad setting refused before the first Veo submit (the real SDK against the
fake server saw none), the settings file's own faults, characters no font can draw, length limits."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import pytest
import srt

from tests.cli_helpers import cli_in_process as cli  # messages and exit codes: no process needed

SECRET = "AIzaSyPreflightSecret0123456789abcdef"


def latin_font() -> str:
    """An installed font file without hanzi (DejaVu, Liberation ...), to configure as the subtitle font."""
    from reelcrew.assemble.fonts import Font, _candidates, missing_glyphs

    for font in _candidates("en"):
        if font.path.endswith(".ttf") and missing_glyphs(Font(font.path), "茶") and not missing_glyphs(font, "tea"):
            return font.path
    pytest.skip("no Latin-only font installed")


def _bad_settings(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (YAML, what the error must name); files made here."""
    (tmp_path / "not-an-image.png").write_text("this is text, not a PNG")
    (tmp_path / "silence.txt").write_text("not audio")
    from reelcrew.media import run_ffmpeg

    run_ffmpeg(["-f", "lavfi", "-i", "color=c=red:s=64x64:d=1", "-an", str(tmp_path / "silent.mp4")], "a silent clip")
    return {
        "colour": ("subtitles: {color: notacolour}\n", "subtitles.color 'notacolour' is not a colour"),
        "box colour": ("subtitles: {box_color: '#12'}\n", "subtitles.box_color"),
        "card colour": ("cards: {background: mauvish}\n", "cards.background"),
        "watermark not an image": (f"watermark: {{image: {tmp_path / 'not-an-image.png'}}}\n",
                                   "is not an image Pillow can open"),
        "watermark missing": (f"watermark: {{image: {tmp_path / 'gone.png'}}}\n", "does not exist"),
        "music missing": (f"music: {{file: {tmp_path / 'gone.mp3'}}}\n", "music file"),
        "music not media": (f"music: {{file: {tmp_path / 'silence.txt'}}}\n", "is not a media file"),
        "music without audio": (f"music: {{file: {tmp_path / 'silent.mp4'}}}\n", "has no audio stream"),
        "transition": ("transitions: {by_mood: {calm: spin}}\n", "unknown transition 'spin'"),
        "font missing": ("subtitles: {font: /nowhere/font.ttf}\n", "subtitle font /nowhere/font.ttf does not exist"),
        "font not a font": (f"subtitles: {{font: {tmp_path / 'silence.txt'}}}\n", "cannot be loaded"),
        "edit function": ("render: {edit: my_edits.nothing:here}\n", "my_edits"),
    }


BAD = ["colour", "box colour", "card colour", "watermark not an image", "watermark missing", "music missing",
       "music not media", "music without audio", "transition", "font missing", "font not a font", "edit function"]


@pytest.mark.parametrize("case", BAD)
def test_each_bad_setting_is_refused_before_the_first_submit(real_env, fake, tmp_path, case):
    text, needle = _bad_settings(tmp_path)[case]
    config = tmp_path / "mine.yaml"
    config.write_text(text, encoding="utf-8")
    result = cli("--topic", "tea", "--scenes", "2", "--yes", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert f"in {config}" in result.stderr or case == "edit function"  # the fix names the file holding it
    assert fake.submit_attempts == 0


@pytest.mark.parametrize("where", ["the environment variable SUBTITLES", ".env (SUBTITLES)"])
def test_a_setting_from_the_environment_or_dotenv_is_fixed_there(real_env, fake, tmp_path, where):
    value = '{"color": "notacolour"}'
    env = {"SUBTITLES": value} if where.startswith("the environment") else {}
    if not env:
        (tmp_path / ".env").write_text(f"SUBTITLES={value}\n")  # the test's working folder
    result = cli("--topic", "tea", "--scenes", "2", "--yes", env=env)
    assert result.returncode == 2 and where in result.stderr, result.stderr
    assert fake.submit_attempts == 0


def test_a_language_known_only_by_its_script_is_not_refused(tmp_path):
    """fontconfig has no orthography for Cantonese; its script (traditional Han) is what a font must cover."""
    result = cli("--mock", "--topic", "tea", "--language", "yue", "--scenes", "1", "--until", "clips",
                 "-o", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr


def test_a_font_that_cannot_draw_the_language_is_refused_before_the_writers(real_env, fake, tmp_path):
    config = tmp_path / "latin.yaml"
    config.write_text(f"subtitles: {{font: {latin_font()}}}\n", encoding="utf-8")
    result = cli("--topic", "茶是怎么制作的", "--scenes", "2", "--yes", "--config", str(config), "--json")
    assert result.returncode == 2, result.stderr
    assert "does not cover 'zh'" in result.stderr and str(config) in result.stderr
    assert fake.submit_attempts == 0 and not fake.text_requests


def test_emoji_are_refused_after_the_writers_by_policy_naming_the_characters(real_env, fake, tmp_path):
    result = cli("--topic", "🍵🔥 tea", "--scenes", "2", "--yes", env={"SUBTITLE_MISSING_GLYPHS": "refuse"})
    assert result.returncode == 2, result.stderr
    assert "no installed font can draw: '🍵🔥'" in result.stderr and "CJK" not in result.stderr
    assert "SUBTITLE_MISSING_GLYPHS=drop in the environment variable SUBTITLE_MISSING_GLYPHS" in result.stderr
    assert fake.submit_attempts == 0
    assert list((tmp_path / "out").glob("*/prompts.json"))  # the writers' work is kept for the next run


@pytest.mark.slow
def test_emoji_topic_renders_with_a_warning_and_keeps_them_in_the_srt_and_metadata(tmp_path):
    out = tmp_path / "o"
    result = cli("--mock", "--topic", "🍵🔥 tea", "--scenes", "2", "--json", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "no installed font can draw '🍵🔥' in the captions; dropped" in result.stderr
    folder = Path(json.loads(result.stdout)["productions"][0]["folder"])
    subs = "".join(s.content for s in srt.parse((folder / "final.srt").read_text(encoding="utf-8")))
    assert "🍵🔥" in subs
    assert "🍵🔥" in json.loads((folder / "metadata.json").read_text(encoding="utf-8"))["seo"]["title"]


def test_fit_text_drops_only_what_no_installed_font_has():
    """The burned-in text drops only what no installed font has; spaces it leaves behind are tidied."""
    from reelcrew.assemble.fonts import fit_text

    fitted = fit_text("Ever wondered about 🍵🔥 tea? Watch this.")
    assert fitted.dropped == {"🍵", "🔥"}
    assert fitted.drawn("Ever wondered about 🍵🔥 tea?\nWatch this.") == "Ever wondered about tea?\nWatch this."


# -- the settings file itself ------------------------------------------------------------------------------------
def test_a_settings_file_that_is_a_folder_or_binary_exits_2_without_a_traceback(tmp_path):
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    for name, needle in (("folder.yaml", "is a folder, not a file"), ("binary.yaml", "is not a text file")):
        result = cli("--mock", "--topic", "tea", "--until", "script", "--config", str(tmp_path / name))
        assert result.returncode == 2 and needle in result.stderr, result.stderr
        assert "fix:" in result.stderr


def test_a_partial_settings_file_falls_back_to_the_defaults(tmp_path):
    config = tmp_path / "partial.yaml"
    config.write_text("scenes:\nsubtitles:\nwatermark:\n  corner: top-left\n", encoding="utf-8")  # cut short
    result = cli("--mock", "--topic", "tea", "--until", "script", "--json", "--config", str(config),
                 "-o", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    folder = Path(json.loads(result.stdout)["productions"][0]["folder"])
    assert len(json.loads((folder / "script.json").read_text())["scenes"]) == 6  # scenes: the shipped default

    from reelcrew.settings import load_settings

    settings = load_settings(config)
    assert settings.watermark.corner == "top-left" and settings.watermark.text == "reelcrew"  # the rest: defaults
    assert settings.subtitles.box_color == "#00000080" and settings.prices  # prices from the shipped file


def test_unknown_keys_and_languages_are_reported_with_the_nearest_known_one(tmp_path):
    config = tmp_path / "typos.yaml"
    config.write_text("scenez: 2\nsubtitles: {colour: red}\n", encoding="utf-8")
    result = cli("--mock", "--topic", "tea", "--until", "script", "--config", str(config), "--language", "english",
                 "-o", str(tmp_path / "o"), env={"VEO3_MOCKMODE": "true"})
    assert result.returncode == 0, result.stderr
    assert "unknown setting 'scenez'" in result.stderr and "did you mean 'scenes'?" in result.stderr
    assert "unknown setting 'subtitles.colour'" in result.stderr and "'subtitles.color'" in result.stderr
    assert "unknown setting VEO3_MOCKMODE in the environment" in result.stderr and "VEO3_MOCK_MODE" in result.stderr
    assert "unknown language 'english'" in result.stderr and "did you mean 'en'?" in result.stderr


@pytest.mark.parametrize("text", [f"gemini_api_key: {{value: {SECRET}}}\n", f"gemini_api_key: [{SECRET}]\n",
                                  f"google_api_key:\n  - {SECRET}\n", f"gemini_api_key: {SECRET}: oops\n"])
def test_a_secret_in_the_wrong_yaml_shape_is_never_echoed(tmp_path, text):
    config = tmp_path / "keys.yaml"
    config.write_text(text, encoding="utf-8")
    out = tmp_path / "o"
    for args in (["--mock", "--topic", "tea", "-o", str(out)], ["config", "show"]):
        result = cli(*args, "--config", str(config))
        assert result.returncode == 2, result.stderr
        assert SECRET not in result.stdout + result.stderr and SECRET[:12] not in result.stderr
        assert "fix:" in result.stderr
    for path in [*out.rglob("*"), *(tmp_path / "home").rglob("*")] if out.exists() else []:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


# -- length limits -------------------------------------------------------------------------------------------------
def test_a_topic_over_200_characters_is_refused_with_the_limit(tmp_path):
    result = cli("--mock", "--topic", "tea " * 60 + "end", "--until", "script", "-o", str(tmp_path / "o"))
    assert result.returncode == 2 and "243 characters long" in result.stderr and "limit is 200" in result.stderr
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*/script.json"))


def test_an_seo_description_over_youtubes_limit_goes_back_to_the_writer(fake, monkeypatch, tmp_path):
    from reelcrew import mock_writer

    script = mock_writer.write_script("how tea is made", "en", 2, 8, "cinematic")
    seo = mock_writer.write_seo(script, "how tea is made")
    too_long = seo.model_copy(update={"description": "Tea. " * 1001})
    fake.script.text_answers = deque([script.model_dump_json(), too_long.model_dump_json(), seo.model_dump_json()])
    env = {"GEMINI_API_KEY": "test-key-not-secret", "GOOGLE_GEMINI_BASE_URL": fake.url, "REELCREW_LLM": "gemini",
           "VEO3_MOCK_MODE": "true"}
    result = cli("--topic", "how tea is made", "--scenes", "2", "--until", "seo", "--json", "-o",
                 str(tmp_path / "o"), env=env)
    assert result.returncode == 0, result.stderr
    folder = Path(json.loads(result.stdout)["productions"][0]["folder"])
    written = json.loads((folder / "seo.json").read_text(encoding="utf-8"))
    assert written["description"] == seo.description and len(fake.text_requests) == 3
    assert "YouTube allows at most 5000" in json.dumps(fake.text_requests[2], ensure_ascii=False)


# -- resume, retry and assemble start with the same pre-flight ------------------------------------------------------
def test_resume_with_a_bad_setting_submits_nothing(real_env, fake, tmp_path):
    held = cli("--topic", "tea", "--scenes", "2", "--yes", "--budget-usd", "0.01")  # written, not approved
    assert held.returncode == 1 and fake.submit_attempts == 0, held.stderr
    config = tmp_path / "mine.yaml"
    config.write_text(f"music: {{file: {tmp_path / 'gone.mp3'}}}\n", encoding="utf-8")
    result = cli("resume", "--yes", "--config", str(config))
    assert result.returncode == 2 and "music file" in result.stderr and str(config) in result.stderr
    assert fake.submit_attempts == 0


@pytest.mark.slow
def test_assemble_with_a_bad_music_file_keeps_the_rendered_final(tmp_path):
    out = tmp_path / "o"
    first = cli("--mock", "--topic", "tea", "--scenes", "1", "--json", "-o", str(out))
    assert first.returncode == 0, first.stderr
    prod = json.loads(first.stdout)["productions"][0]
    (tmp_path / "notes.txt").write_text("not music")
    result = cli("assemble", prod["id"], "--music", str(tmp_path / "notes.txt"), "-o", str(out))
    assert result.returncode == 2 and "is not a media file" in result.stderr and "command line" in result.stderr
    again = cli("--mock", "--topic", "tea", "--scenes", "1", "--json", "-o", str(out))
    assert json.loads(again.stdout)["productions"][0]["note"].startswith("already rendered")  # final kept
