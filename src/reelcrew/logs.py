"""Logs: JSON lines in the output folder (production, clip, stage, attempt on each line); secrets redacted.

The terminal gets human lines from the CLI; this file is for audits and bug reports. Every line
passes through a redactor, so an API key that ends up in an exception text never reaches the file.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import structlog
from structlog.typing import EventDict, WrappedLogger

_KEY_PATTERNS = [re.compile(r"AIza[0-9A-Za-z_\-]{20,}"), re.compile(r"(key=)[^&\s\"']+"),
                 re.compile(r"(x-goog-api-key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+", re.I),
                 re.compile(r"(Bearer\s+)[A-Za-z0-9._\-]+")]
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Values that must never be written, whatever text they end up in."""
    if value and len(value) >= 6:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "****")
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "****", text)
    return text


def _redact_event(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    return {k: redact(v) if isinstance(v, str) else v for k, v in event.items()}


def log_to_file(path: Path, debug: bool = False) -> None:
    root = logging.getLogger("reelcrew")
    if any(getattr(h, "_reelcrew", False) for h in root.handlers):
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler._reelcrew = True  # type: ignore[attr-defined]
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                           structlog.stdlib.ExtraAdder(), structlog.processors.TimeStamper(fmt="iso", utc=True)],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info,
                    _redact_event, structlog.processors.JSONRenderer(ensure_ascii=False)]))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
