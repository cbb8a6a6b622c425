"""The pre-flight: everything a run will need, checked before anything is paid for.

Two moments. When `run`, `resume`, `retry` or `assemble` starts, the START checks look at the settings and files
the final cut will use (colours, watermark, music, transitions, fonts, the edit function, output folders); as soon
as the writers have written a production's captions and title, the TEXT checks hold them against the installed
fonts. Both come before the first Veo submit, so a typo costs nothing. A failure is a ConfigError (exit 2) whose
fix names where the setting lives (`config_check.holder`: the `--config` file, `.env` or the variable).

Each check is a small function in a list; a later feature adds its own with `@start_check` or `@text_check`.
The settings file itself (a folder, binary, partial, unknown keys) is checked earlier, when it is loaded.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from reelcrew.config_check import holder
from reelcrew.errors import ConfigError
from reelcrew.notices import warn
from reelcrew.settings import Settings

FINAL_STAGES = ("clips", "final")  # runs that go this far will cut a final: its settings must hold


@dataclass
class RunPlan:
    """What a starting run will do: the settings, how far, in which languages, into which folders."""

    settings: Settings
    until: str = "final"
    languages: set[str] = field(default_factory=set)
    folders: list[Path] = field(default_factory=list)

    @property
    def cuts(self) -> bool:
        return self.until in FINAL_STAGES


@dataclass
class Texts:
    """What one production burns into its frames, as the writers wrote it."""

    production: str
    captions: list[str]
    title: str | None = None  # drawn on the thumbnail or the title card


StartCheck = Callable[[RunPlan], None]
TextCheck = Callable[[Settings, Texts], None]
START_CHECKS: list[StartCheck] = []
TEXT_CHECKS: list[TextCheck] = []


def start_check(check: StartCheck) -> StartCheck:
    START_CHECKS.append(check)
    return check


def text_check(check: TextCheck) -> TextCheck:
    TEXT_CHECKS.append(check)
    return check


def check_start(settings: Settings, until: str = "final", languages: Iterable[str] = (),
                folders: Iterable[Path] = ()) -> None:
    """Every start check, in order; the first failure raises ConfigError."""
    plan = RunPlan(settings, until, {lang for lang in languages if lang}, list(folders))
    for check in START_CHECKS:
        check(plan)


def check_texts(settings: Settings, texts: Texts) -> None:
    """Every text check for one production's captions and title; the first failure raises ConfigError."""
    for check in TEXT_CHECKS:
        check(settings, texts)


def _problem(settings: Settings, name: str, problem: str, advice: str) -> ConfigError:
    return ConfigError(problem, f"set {name} in {holder(settings, name)}: {advice}")


# -- start checks ----------------------------------------------------------------------------------------------
@start_check
def _veo_options(plan: RunPlan) -> None:
    """Veo parameters the backend and model would refuse, before anything is spent (video.registry)."""
    from reelcrew.video.registry import option_problems

    if plan.until not in ("clips", "final"):
        return
    for name, problem, advice in option_problems(plan.settings)[:1]:
        raise _problem(plan.settings, name, problem, advice)


@start_check
def _continuity(plan: RunPlan) -> None:
    """Continuity references and extend against the backend, model, clip length and resolution, before any spend
    (video.continuity_refs)."""
    from reelcrew.video.continuity_refs import problems

    if plan.until not in ("clips", "final"):
        return
    for name, problem, advice in problems(plan.settings)[:1]:
        raise _problem(plan.settings, name, problem, advice)


COLOURS = (("subtitles.color", False), ("subtitles.stroke_color", False), ("subtitles.box_color", True),
           ("subtitles.highlight_color", False), ("cards.background", False), ("cards.color", False))


def _value(settings: Settings, name: str):
    value = settings
    for part in name.split("."):
        value = getattr(value, part)
    return value


@start_check
def colours(plan: RunPlan) -> None:
    """A colour Pillow cannot read would end the final in a traceback after the clips were paid."""
    if not plan.cuts:
        return
    from reelcrew.assemble.captions import _rgba

    for name, may_be_empty in COLOURS:
        value = _value(plan.settings, name)
        if not value and may_be_empty:
            continue
        try:
            _rgba(value)
        except (ValueError, TypeError, AttributeError):
            raise _problem(plan.settings, name, f"{name} {value!r} is not a colour",
                           "use a colour name (white), #RRGGBB or #RRGGBBAA") from None


def _image_problem(path: Path) -> str | None:
    """Why Pillow cannot use this file as an image, or None."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        return "does not exist" if not path.exists() else "is not a file"
    try:
        with Image.open(path) as image:
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return f"is not an image Pillow can open ({type(exc).__name__})"
    return None


@start_check
def images(plan: RunPlan) -> None:
    """The watermark image and the end card's logo: there, and an image."""
    if not plan.cuts:
        return
    s = plan.settings
    wanted = [("watermark.image", s.watermark.image)] + ([("cards.logo", s.cards.logo)] if s.cards.end else [])
    for name, value in wanted:
        if not value:
            continue
        path = Path(value).expanduser()
        problem = _image_problem(path)
        if problem:
            raise _problem(s, name, f"{name} {path} {problem}", "point it at a PNG or JPEG, or leave it empty")


def audio_problem(path: Path) -> str | None:
    """Why this file cannot be the music bed (missing, or no audio stream ffmpeg can read), or None."""
    from moviepy.video.io.ffmpeg_reader import ffmpeg_parse_infos

    if not path.is_file():
        return "does not exist" if not path.exists() else "is not a file"
    try:
        info = ffmpeg_parse_infos(str(path))
    except (OSError, IndexError, KeyError, ValueError):
        return "is not a media file ffmpeg can read"
    if not info.get("audio_found"):
        return "has no audio stream" if info.get("video_found") else "is not a media file ffmpeg can read"
    return None


@start_check
def music(plan: RunPlan) -> None:
    if not plan.cuts or not plan.settings.music.file:
        return
    path = Path(plan.settings.music.file).expanduser()
    problem = audio_problem(path)
    if problem:
        raise _problem(plan.settings, "music.file", f"music file {path} {problem}",
                       "point it at an audio file (mp3, m4a, wav ...), or leave it empty")


@start_check
def transitions(plan: RunPlan) -> None:
    """Names are checked when the settings load; this catches one changed since (a flag, a library caller)."""
    from reelcrew.assemble.transitions import lookup

    t = plan.settings.transitions
    for name, kind in [("transitions.kind", t.kind), *((f"transitions.by_mood.{m}", k) for m, k in t.by_mood.items())]:
        try:
            lookup(kind)
        except ValueError as exc:
            raise _problem(plan.settings, "transitions", f"{name}: {exc}", "use a kind from that list") from None


@lru_cache(maxsize=32)
def _languages_of(path: str) -> frozenset[str]:
    """The languages fontconfig says a font file covers (empty when fc-query is missing)."""
    if not shutil.which("fc-query"):
        return frozenset()
    out = subprocess.run(["fc-query", "--format", "%{lang}\n", path], capture_output=True, text=True).stdout
    return frozenset(lang for line in out.split() for lang in line.split("|") if lang)


# fontconfig knows the orthographies of a few hundred languages; for others, the language's script stands in
SCRIPT_LANGUAGE = {"Latn": "en", "Hans": "zh-cn", "Hant": "zh-tw", "Jpan": "ja", "Kore": "ko", "Cyrl": "ru",
                   "Arab": "ar", "Deva": "hi", "Grek": "el", "Hebr": "he", "Thai": "th"}


def _fontconfig_names(language: str) -> list[str]:
    """The language, then the fontconfig language standing for its script (yue -> Hant -> zh-tw)."""
    import langcodes

    names = [language.lower()]
    try:
        script = langcodes.Language.get(language).maximize().script
    except (ValueError, LookupError):
        script = None
    if script in SCRIPT_LANGUAGE:
        names.append(SCRIPT_LANGUAGE[script])
    return names


@lru_cache(maxsize=32)
def _installed_for(language: str) -> bool | None:
    """Does some installed font cover `language`? None when fontconfig cannot tell (not installed, or it knows
    no orthography for the language nor for its script): then only the written captions are checked."""
    if not shutil.which("fc-list"):
        return None
    names = _fontconfig_names(language)
    for name in names:
        out = subprocess.run(["fc-list", f":lang={name}", "file"], capture_output=True, text=True).stdout
        if out.strip():
            return True
    return False if len(names) > 1 else None


def _covers(langs: frozenset[str], language: str) -> bool:
    return any(any(lang == name or lang.startswith(name + "-") or name.startswith(lang + "-") for lang in langs)
               for name in _fontconfig_names(language))


def _font_advice(language: str) -> str:
    if language.lower().split("-")[0] in ("zh", "ja", "ko"):
        return "install a CJK font (Debian: apt-get install fonts-noto-cjk or fonts-wqy-microhei; `make setup` " \
               "does it for Chinese)"
    return f"install a font that covers {language!r} (Debian: fonts-noto-core)"


@start_check
def fonts(plan: RunPlan) -> None:
    """The configured subtitle font exists and loads; a font covers each language the run writes in."""
    import langcodes

    if not plan.cuts:
        return
    s = plan.settings
    configured = s.subtitles.font
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise _problem(s, "subtitles.font", f"subtitle font {path} does not exist",
                           "point it at a .ttf/.ttc/.otf file, or leave it empty to find one by language")
        try:
            from PIL import ImageFont

            ImageFont.truetype(str(path), 24)
        except OSError as exc:
            raise _problem(s, "subtitles.font", f"subtitle font {path} cannot be loaded ({exc})",
                           "point it at a .ttf/.ttc/.otf file, or leave it empty") from None
    for language in sorted(plan.languages):
        if language == "auto" or not langcodes.tag_is_valid(language):
            continue  # an unknown code was reported when the settings loaded; the captions are checked later
        if configured:
            langs = _languages_of(str(Path(configured).expanduser()))
            if langs and not _covers(langs, language):
                raise _problem(s, "subtitles.font", f"subtitle font {Path(configured).name} does not cover "
                               f"{language!r}, the captions' language", "choose a font that covers it, or leave "
                               "subtitles.font empty to find one by language")
        elif _installed_for(language) is False:
            raise ConfigError(f"no installed font covers {language!r}, the captions' language",
                              _font_advice(language) + f", or set subtitles.font in {holder(s, 'subtitles.font')}")


@start_check
def edit_function(plan: RunPlan) -> None:
    """render.edit imports now: a typo in it costs nothing."""
    if not plan.cuts:
        return
    from reelcrew.assemble.hooks import load_edit

    load_edit(plan.settings.render.edit)


@start_check
def output_folders(plan: RunPlan) -> None:
    """Each production's folder (else the output folder) can be written: the final is written last."""
    from reelcrew.files import ensure_writable

    for folder in plan.folders or [plan.settings.reelcrew_output_dir]:
        target = folder if folder.exists() else folder.parent
        if folder.exists() and not folder.is_dir():
            raise _problem(plan.settings, "reelcrew_output_dir", f"output path {folder} is a file, not a folder",
                           "choose a folder (-o/--output-dir)")
        try:
            ensure_writable(target)
        except OSError as exc:
            raise _problem(plan.settings, "reelcrew_output_dir", f"folder {folder} is not writable ({exc.strerror})",
                           "choose a folder you can write (-o/--output-dir) or fix its permissions") from None


@start_check
def artifact_store(plan: RunPlan) -> None:
    """REELCREW_ARTIFACTS can be reached and written (a probe object) before any spend: a bucket that is missing,
    refused credentials or a refused endpoint would otherwise fail the first clip after it was paid for."""
    from reelcrew import artifacts

    if plan.settings.reelcrew_artifacts:
        try:
            artifacts.check(plan.settings)
        except artifacts.ArtifactError as exc:
            raise ConfigError(exc.problem, exc.fix) from None


@start_check
def watermark_text(plan: RunPlan) -> None:
    """The watermark text is drawn on every frame: the same policy as the captions."""
    settings, text = plan.settings, plan.settings.watermark.text
    if not plan.cuts or not text or settings.watermark.image:
        return
    from reelcrew.assemble.fonts import undrawable

    missing = undrawable(text)
    if missing and settings.subtitle_missing_glyphs == "refuse":
        raise _problem(settings, "watermark.text", f"watermark.text has characters no installed font can draw: "
                       f"{''.join(missing)!r}", "remove them")
    if missing:
        warn(f"no installed font can draw {''.join(missing)!r} in watermark.text; dropped from the frames")


# -- text checks -------------------------------------------------------------------------------------------------
@text_check
def drawable(settings: Settings, texts: Texts) -> None:
    """Characters no installed font can draw: dropped from the burned-in text with a warning (kept in the .srt
    and metadata), or refused by SUBTITLE_MISSING_GLYPHS=refuse; the rest must fit one font."""
    from reelcrew.assemble.fonts import find_font, undrawable
    from reelcrew.errors import AssemblyError

    parts = [("captions", "".join(texts.captions), settings.subtitles.font), ("title", texts.title or "", None)]
    for what, text, configured in parts:
        if not text.strip():
            continue
        missing = undrawable(text)
        shown = "".join(missing[:12])
        if missing and settings.subtitle_missing_glyphs == "refuse":
            raise ConfigError(
                f"the {what} of {texts.production} have characters no installed font can draw: {shown!r}",
                f"remove them from the production's {'prompts' if what == 'captions' else 'seo'}.json, install a "
                f"font that has them, or set SUBTITLE_MISSING_GLYPHS=drop in "
                f"{holder(settings, 'subtitle_missing_glyphs')} to drop them from the burned-in text")
        if missing:
            warn(f"{texts.production}: no installed font can draw {shown!r} in the {what}; dropped from the "
                 "burned-in text, kept in the .srt and metadata")
        kept = "".join(ch for ch in text if ch not in set(missing))
        try:
            find_font(kept, configured)
        except AssemblyError as exc:
            raise ConfigError(f"the {what} of {texts.production}: {exc.problem}",
                              f"{exc.fix} (subtitles.font is in {holder(settings, 'subtitles.font')})") from None
