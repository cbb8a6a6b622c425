"""The settings file as users write it: partial, with typos, with a secret in the wrong shape.

`settings.load_settings` uses these to lay a partial file over the shipped defaults, to report keys and languages
it does not know (naming the nearest known one), and to turn a validation error into a ConfigError that names the
file holding the setting and never echoes a secret's value. `holder` is what a pre-flight fix says to edit.
"""

from __future__ import annotations

import difflib
import os
import typing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from reelcrew.errors import ConfigError
from reelcrew.notices import warn

PREFIXES = ("reelcrew_", "veo3_")  # environment names that are ours: a typo among them is reported
READ_ELSEWHERE = {"reelcrew_config", "reelcrew_gcs_base_url"}  # ours, but read outside Settings
SECRET_WORDS = ("key", "secret", "token", "password", "credential")


def _section(field: FieldInfo) -> type[BaseModel] | None:
    """The model of a nested section (subtitles, watermark ...), or None for a plain field."""
    annotation = field.annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _nullable(field: FieldInfo) -> bool:
    return field.default is None or type(None) in typing.get_args(field.annotation)


def without_unset(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """`key:` left empty in YAML means "not set" (the default applies), unless empty is a meaning of its own
    (`box_color:` empty = no box). A truncated file (`subtitles:` with nothing under it) falls back the same way."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = model.model_fields.get(str(key).lower())
        if field is None:
            out[key] = value
            continue
        if value is None and not _nullable(field):
            continue
        section = _section(field)
        out[key] = without_unset(value, section) if section and isinstance(value, dict) else value
    return out


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`, section by section (a file setting `subtitles.size` keeps the other subtitle keys)."""
    out = {str(k).lower(): v for k, v in base.items()}
    for key, value in over.items():
        key = str(key).lower()
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def _unknown(data: dict[str, Any], model: type[BaseModel], prefix: str = "") -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    known = list(model.model_fields)
    for key, value in data.items():
        name = str(key).lower()
        field = model.model_fields.get(name)
        if field is None:
            near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            found.append((prefix + str(key), prefix + near[0] if near else None))
            continue
        section = _section(field)
        if section and isinstance(value, dict):
            found += _unknown(value, section, f"{prefix}{name}.")
    return found


def report_unknown(data: dict[str, Any], path: Path) -> None:
    """Warn about keys of the settings file, `.env` and the environment that no setting reads (names only)."""
    from reelcrew.settings import Settings

    for key, near in _unknown(data, Settings):
        warn(f"unknown setting {key!r} in {path} is ignored" + (f"; did you mean {near!r}?" if near else ""))
    known = list(Settings.model_fields)
    names = {name: "the environment" for name in os.environ}
    if Path(".env").is_file():
        from dotenv import dotenv_values

        names.update({name: ".env" for name in dotenv_values(".env")})
    for name, where in sorted(names.items()):
        lower = name.lower()
        if lower.startswith(PREFIXES) and lower not in known and lower not in READ_ELSEWHERE:
            close = difflib.get_close_matches(lower, known, n=1, cutoff=0.6)
            warn(f"unknown setting {name} in {where} is ignored" + (f"; did you mean {close[0].upper()}?"
                                                                     if close else ""))


def report_language(language: str) -> None:
    """Warn about a language code that is not a language (`english`, `jp`), naming the code it probably meant."""
    import langcodes

    from reelcrew.brief import LANGUAGE_NAMES

    if not language or language == "auto" or langcodes.tag_is_valid(language):
        return
    by_name = {name.split(" (")[0].lower(): code for code, name in LANGUAGE_NAMES.items()}
    choices = [*LANGUAGE_NAMES, *by_name]
    near = difflib.get_close_matches(language.lower(), choices, n=1, cutoff=0.5)
    code = by_name.get(near[0], near[0]) if near else None
    warn(f"unknown language {language!r} (not a BCP-47 code); the writers are asked for it as it is"
         + (f"; did you mean {code!r}?" if code else "; use a code such as en, zh, ja or es, or auto"))


def is_secret(name: str) -> bool:
    return any(word in name.lower() for word in SECRET_WORDS)


def holder(settings: Any, name: str) -> str:
    """Where to change setting `name` (`subtitles.color`, `reelcrew_output_dir`): the command line, the
    environment variable, `.env`, or the settings file in use (the `--config` file when one was given)."""
    top = name.split(".")[0].lower()
    flags: set[str] = getattr(settings, "_overrides", None) or set()
    if top in flags:
        return "the command line option"
    if top.upper() in os.environ or top in {k.lower() for k in os.environ}:
        return f"the environment variable {top.upper()}"
    if Path(".env").is_file():
        from dotenv import dotenv_values

        if top in {k.lower() for k in dotenv_values(".env")}:
            return f".env ({top.upper()})"
    from reelcrew.settings import DEFAULT_CONFIG

    return str(getattr(settings, "_config_file", None) or DEFAULT_CONFIG)


def invalid(exc: ValidationError, path: Path, overrides: set[str]) -> ConfigError:
    """The first validation error as a ConfigError: the setting, why, and where to fix it; a secret's value is
    never shown (a key given as a mapping or a list is described by its shape)."""
    first = exc.errors()[0]
    name = ".".join(str(p) for p in first["loc"]) or "settings"
    env_name = name.upper() if "." not in name else name
    if is_secret(name):
        shape = type(first.get("input")).__name__
        return ConfigError(f"setting {env_name} is invalid: it must be one string (the key itself), got a {shape} "
                           "(its value is not shown)",
                           f"give {env_name} as a single string in .env or the environment, not in {path} "
                           "(keys belong in .env, which is never committed)")
    given = first.get("input")
    if isinstance(given, str) and "://" in given:  # a URL's password (s3://key:secret@…) is never echoed
        from reelcrew.artifacts import masked

        given = masked(given)
    shown = repr(given)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    where = holder(SimpleNamespace(_overrides=overrides, _config_file=path), name)
    return ConfigError(f"setting {env_name}={shown} is invalid: {first['msg']}", f"fix {env_name} in {where}")
