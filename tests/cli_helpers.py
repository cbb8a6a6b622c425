"""Running `reelcrew` from a test, one way for every file: in a subprocess where the process itself is the point (a
crash, kill -9, a signal, the environment a new process reads, the exit code of a real process, several processes
at once), and in this process (typer's CliRunner isolation around the console script's own `main`) for a short
command whose output and exit code are the point: the same entry point, flags, messages and exit codes, without
starting Python and importing the app again (about 1.5 s a call on two busy cores)."""

from __future__ import annotations

import functools
import os
import runpy
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

from tests.conftest import ROOT

RUN = [sys.executable, str(ROOT / "run_integrated_pipeline.py")]


def cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 300, drop: Sequence[str] = (),
        stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """`reelcrew ARGS` in a new process (the test's environment, plus `env`, less `drop`); a traceback on stderr
    fails the test, whatever the exit code: every error a user sees is one of ours, with its fix."""
    environ = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in drop}
    result = subprocess.run([*RUN, *args], capture_output=True, text=True, timeout=timeout, env=environ, stdin=stdin)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def start(*args: str, env: Mapping[str, str] | None = None, **popen) -> subprocess.Popen:
    """`reelcrew ARGS` started in the background (stdout and stderr piped unless `popen` says otherwise)."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "stdin": subprocess.DEVNULL, **popen}
    return subprocess.Popen([*RUN, *args], text=True, env={**os.environ, **(env or {})}, **options)


@functools.cache
def script_commands() -> frozenset[str]:
    """The first arguments run_integrated_pipeline.py passes on as they are (any other gets `run` before it)."""
    return frozenset(runpy.run_path(str(RUN[1]), run_name="cli_helpers")["COMMANDS"])


def cli_in_process(*args: str, env: Mapping[str, str] | None = None, timeout: float | None = None,
                   drop: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """`reelcrew ARGS` through `reelcrew.cli.main` in this process, with stdin empty, stdout and stderr captured,
    `env` set and `drop` unset for the call; takes and returns what `cli` does (`timeout` is the caller's guard
    for a process: pytest-timeout guards this one)."""
    from typer.testing import CliRunner

    from reelcrew.cli import main
    from reelcrew.cli.app import JSON_ERRORS

    argv, handler = sys.argv, signal.getsignal(signal.SIGTERM)  # main() installs its SIGTERM handler
    code: int | str | None = 0
    changes: dict[str, str | None] = {**dict(env or {}), **dict.fromkeys(drop)}
    if not args or args[0] not in script_commands():  # as run_integrated_pipeline.py reads its arguments
        args = ("run", *args)
    with CliRunner().isolation(env=changes) as (stdout, stderr, _):
        sys.argv = ["reelcrew", *args]
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code
        finally:
            sys.argv = argv
            signal.signal(signal.SIGTERM, handler)
            JSON_ERRORS["on"] = False  # what main() set for this command line only
            sys.stdout.flush()
            sys.stderr.flush()
        out, err = stdout.getvalue().decode(), stderr.getvalue().decode()
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    assert "Traceback" not in err, err
    return subprocess.CompletedProcess(["reelcrew", *args], returncode, out, err)
