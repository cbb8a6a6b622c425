"""Warnings a user should see now (a dropped emoji, an unknown setting), not only in the log file.

Library code calls `warn`; the CLI shows these on stderr (`reelcrew.cli.app.settings_for` installs the handler)
and the log file keeps them like any other line. A warning never carries a setting's value, only its name.
"""

from __future__ import annotations

import logging

log = logging.getLogger("reelcrew.notice")


_said: set[str] = set()


def warn(message: str) -> None:
    """Say it once per process (the pre-flight at the start of `assemble` and in the pipeline see the same)."""
    if message not in _said:
        _said.add(message)
        log.warning(message)


def show_on(print_line) -> None:
    """Send warnings to `print_line` (the CLI's stderr console), once per process."""
    if any(getattr(h, "_reelcrew_notice", False) for h in log.handlers):
        return

    class _Handler(logging.Handler):
        _reelcrew_notice = True

        def emit(self, record: logging.LogRecord) -> None:
            print_line(record.getMessage())

    log.addHandler(_Handler(logging.WARNING))
