"""Waiting in tests for something another process does: poll, and fail at a deadline saying what never came."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

DEADLINE = 120.0  # generous: it must hold on two busy cores; a passing run returns as soon as the thing happens


def wait_until(check: Callable[[], T], what: str, timeout: float = DEADLINE, proc: subprocess.Popen | None = None,
               interval: float = 0.05) -> T:
    """Return check()'s first truthy value; pytest.fail at the deadline, or at once if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the process exited ({proc.returncode}) before {what}: {(err or '')[-1500:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
