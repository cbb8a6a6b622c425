"""The `reelcrew` command: a face over `reelcrew.service` that parses flags and formats results, nothing more.

Importing this package registers every command (the modules below add theirs to the one Typer app in `app.py`);
`main` is the console script `reelcrew` and what `run_integrated_pipeline.py` and `python -m reelcrew` call."""

from __future__ import annotations

import signal
import sys
from importlib import import_module

from typer import TyperException

from reelcrew.cli.app import JSON_ERRORS, app, expand_multi_value, print_error_json

__all__ = ["app", "main"]

# each module registers its commands on import; this order is the order `--help` lists them in
COMMAND_MODULES = ("run", "upkeep", "backup", "config", "assemble", "serve", "workers", "slo")
for _module in COMMAND_MODULES:
    import_module(f"reelcrew.cli.{_module}")


def main() -> None:
    def terminate(signum, frame):  # SIGTERM stops like Ctrl-C: receipts kept, leases released
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    args = expand_multi_value(sys.argv[1:])
    as_json = JSON_ERRORS["on"] = "--json" in args
    try:
        # with --json, click's own errors (an unknown option, a bad value) come back here to be printed as JSON
        code = app(args=args, prog_name="reelcrew", standalone_mode=not as_json)
    except KeyboardInterrupt:  # outside a command's own handling (e.g. during start-up)
        sys.exit(130)
    except TyperException as exc:  # click's usage errors (typer vendors click; Abort is Ctrl-C at a prompt)
        show, message = getattr(exc, "show", None), getattr(exc, "format_message", None)
        if show is None or message is None:
            sys.exit(130)
        show()
        code = getattr(exc, "exit_code", 2)
        print_error_json(message(), "see `reelcrew --help` or `reelcrew COMMAND --help`", code)
        sys.exit(code)
    sys.exit(code if isinstance(code, int) else 0)
