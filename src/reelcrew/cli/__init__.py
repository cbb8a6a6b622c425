"""The `reelcrew` command: a face over `reelcrew.service` that parses flags and formats results, nothing more.

Importing this package registers every command (the modules below add theirs to the one Typer app in `app.py`);
`main` is the console script `reelcrew` and what `run_integrated_pipeline.py` and `python -m reelcrew` call."""

from __future__ import annotations

import signal
import sys
from importlib import import_module

from reelcrew.cli.app import app, expand_multi_value

__all__ = ["app", "main"]

# each module registers its commands on import; this order is the order `--help` lists them in
COMMAND_MODULES = ("run", "upkeep", "backup", "config", "assemble", "serve")
for _module in COMMAND_MODULES:
    import_module(f"reelcrew.cli.{_module}")


def main() -> None:
    def terminate(signum, frame):  # SIGTERM stops like Ctrl-C: receipts kept, leases released
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        app(args=expand_multi_value(sys.argv[1:]), prog_name="reelcrew")
    except KeyboardInterrupt:  # outside a command's own handling (e.g. during start-up)
        sys.exit(130)
