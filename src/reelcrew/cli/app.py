"""The Typer app, the options several commands share, and how a ReelcrewError becomes a message and an exit code
(2 for bad input or configuration, 1 for a failed production, 130 for an interrupt)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn, ParamSpec, TypeVar, overload

import typer
from rich.console import Console

from reelcrew.errors import ReelcrewError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="reelcrew: topics in, finished short videos out (CrewAI writers, Veo clips, one-pass assembly).")
config_app = typer.Typer(help="Show or initialise settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")
ledger_app = typer.Typer(help="The ledger: import an older one.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
err = Console(stderr=True, highlight=False, soft_wrap=True)

# Options shared by several commands, so their flags and help read the same everywhere.
OutputDirOpt = Annotated[Path | None, typer.Option("--output-dir", "-o", help="Output folder (default: output/).")]
MockOpt = Annotated[bool, typer.Option("--mock", help="Mock LLM and mock Veo: offline, free, real clips.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Spend without asking for confirmation.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Settings file (default: config/pipeline.yaml).")]
BudgetOpt = Annotated[float | None, typer.Option("--budget-usd", min=0, help="Hard cap on this run's Veo spend.")]


class Aspect(StrEnum):
    landscape = "16:9"
    portrait = "9:16"


class Continuity(StrEnum):
    none = "none"
    last_frame = "last_frame"
    references = "references"
    extend = "extend"


class Until(StrEnum):
    script = "script"
    seo = "seo"
    prompts = "prompts"
    clips = "clips"
    final = "final"


def settings_for(output_dir: Path | None = None, config: Path | None = None, mock: bool = False, **overrides):
    from rich.markup import escape

    from reelcrew.notices import show_on
    from reelcrew.settings import load_settings

    show_on(lambda line: err.print(f"[yellow]warning:[/] {escape(line)}"))

    if mock:
        overrides.update(reelcrew_llm="mock", veo3_mock_mode=True)
    if output_dir is not None:
        overrides["reelcrew_output_dir"] = output_dir
    settings = load_settings(config, **overrides)
    from reelcrew import alerts

    alerts.install(settings)  # REELCREW_ALERT_WEBHOOK: this command's breaker, quota, budget and failure alerts
    return settings


def open_store(settings):
    """The service's ledger, with an import of an older folder ledger reported on stderr."""
    from reelcrew.service import open_store as service_open_store

    return service_open_store(settings, notify=err.print)


def open_reader(settings):
    """The ledger for commands that only read (status, cost): read-only when the folders cannot be written."""
    from reelcrew.service.ledger import open_reader as service_open_reader

    return service_open_reader(settings, notify=err.print)


def interrupted() -> NoReturn:
    if json_wanted():
        print_error_json("interrupted", "run `reelcrew resume` to continue (nothing is paid twice)", 130)
    err.print("[yellow]interrupted:[/] finished work and operation receipts are in the ledger; "
              "run `reelcrew resume` to continue (nothing is paid twice)")
    raise typer.Exit(130)


def fail(exc: ReelcrewError) -> NoReturn:
    """The error on stderr for people; with --json also `{"error", "fix", "exit_code"}` on stdout for programs."""
    if json_wanted():
        print_error_json(exc.problem, exc.fix, exc.exit_code)
    err.print(f"[bold red]error:[/] {exc.problem}")
    if exc.fix:
        err.print(f"[bold]fix:[/] {exc.fix}")
    raise typer.Exit(exc.exit_code)


P = ParamSpec("P")
R = TypeVar("R")


@overload
def reports_errors(command: Callable[P, R], *, resumable: bool = False) -> Callable[P, R]: ...


@overload
def reports_errors(command: None = None, *, resumable: bool = False) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def reports_errors(command=None, *, resumable=False):
    """Every command's error handling in one place: a ReelcrewError becomes `fail` (its message, its fix, its exit
    code), and with `resumable` (commands that run productions) Ctrl-C or SIGTERM becomes `interrupted` (exit 130,
    "run `reelcrew resume`"); other commands let an interrupt reach `main`, which exits 130 without that advice.

    `functools.wraps` keeps typer's view of the command: it reads the signature and the type hints through
    `__wrapped__` (inspect.signature and typing.get_type_hints follow it), and the help from the docstring."""

    def decorate(func):
        @functools.wraps(func)
        def guarded(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except ReelcrewError as exc:
                fail(exc)
            except KeyboardInterrupt:
                if not resumable:
                    raise
                interrupted()

        return guarded

    return decorate(command) if command is not None else decorate


JSON_ERRORS = {"on": False}  # set by `main` when the command line has --json; every command accepts --json


def json_wanted() -> bool:
    """Did the command line ask for --json? (Set once by `main`, so no command passes it to `fail`.)"""
    return JSON_ERRORS["on"]


def print_error_json(problem: str, fix: str | None, exit_code: int) -> None:
    print(json.dumps({"error": problem, "fix": fix, "exit_code": exit_code}, ensure_ascii=False, indent=2))


MULTI_VALUE = {"--clips", "--captions"}


def expand_multi_value(argv: list[str]) -> list[str]:
    """Let `--clips a.mp4 b.mp4 --captions "x" "y"` work as users write it (click wants one value a flag)."""
    out, current = [], None
    for arg in argv:
        if arg in MULTI_VALUE:
            current = arg
            continue
        if current and not arg.startswith("--"):
            out += [current, arg]
            continue
        current = None
        out.append(arg)
    return out
