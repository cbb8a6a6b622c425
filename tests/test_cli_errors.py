"""The CLI's one error decorator (`reelcrew.cli.app.reports_errors`): every command wears it, a ReelcrewError
becomes its message, fix and exit code, Ctrl-C in a command that runs productions says how to resume (130), and
run_integrated_pipeline.py passes every command on (only a bare topic gets `run` put before it)."""

from __future__ import annotations

import pytest
import typer

from reelcrew.cli import app
from reelcrew.cli.app import reports_errors
from reelcrew.errors import ConfigError
from tests.cli_helpers import cli_in_process, script_commands


def _commands():
    yield from ((c.callback.__name__, c.callback) for c in app.registered_commands)
    for group in app.registered_groups:
        yield from ((f"{group.name} {c.name}", c.callback) for c in group.typer_instance.registered_commands)


def test_every_command_reports_errors_through_the_decorator():
    bare = [name for name, callback in _commands() if callback.__code__.co_name != "guarded"]
    assert bare == [], f"wrap these commands in @reports_errors: {bare}"


def test_the_script_passes_every_command_on():
    names = {c.callback.__name__ for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert names <= script_commands(), names - script_commands()
    assert "exit 1 when one is broken" in cli_in_process("slo", "--help").stdout  # not `run slo`


def test_an_error_becomes_its_message_fix_and_exit_code_and_ctrl_c_says_resume_only_where_it_runs_work(capsys):
    @reports_errors
    def broken() -> None:
        raise ConfigError("the thing is wrong", "set THING")

    with pytest.raises(typer.Exit) as exit_:
        broken()
    assert exit_.value.exit_code == 2
    said = capsys.readouterr().err
    assert "error: the thing is wrong" in said and "fix: set THING" in said

    def stopped() -> None:
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as exit_:
        reports_errors(resumable=True)(stopped)()
    assert exit_.value.exit_code == 130 and "reelcrew resume" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):  # a status or a backup has nothing to resume: main exits 130 quietly
        reports_errors(stopped)()
