"""`reelcrew slo`: the seed-004 service level objectives over a window, for people (a table) and cron (exit 1 when
one is broken; a broken one also goes to REELCREW_ALERT_WEBHOOK)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from reelcrew.cli.app import ConfigOpt, JsonOpt, OutputDirOpt, app, open_reader, reports_errors, settings_for
from reelcrew.cli.render import print_json


@app.command()
@reports_errors
def slo(
    window: Annotated[str, typer.Option("--window", help="How far back: 24h, 30m, 7d or seconds.")] = "24h",
    output_dir: OutputDirOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Service level objectives from the ledger: each value with its min/max and target; exit 1 when one is broken."""
    from reelcrew import alerts
    from reelcrew.slo import compute, parse_window, shown
    from reelcrew.slo_watch import alert_broken

    settings = settings_for(output_dir, config)
    report = compute(open_reader(settings), settings.slo, parse_window(window))
    broken = report.broken
    if alert_broken(settings, report, window) and (sender := alerts.current()) is not None:
        sender.flush(alerts.POST_TIMEOUT + 1)  # cron's process exits next: the alert leaves first
    if as_json:
        print_json(report.as_json())
    else:
        table = Table(title=f"reelcrew SLOs, last {window}")
        for column in ("slo", "value", "min", "max", "target", "n", "status"):
            table.add_column(column, justify="left" if column in ("slo", "status") else "right", no_wrap=True,
                             min_width=6 if column == "status" else None)
        for name, value in report.slos.items():
            colour = {"ok": "green", "broken": "red"}.get(value.status, "yellow")
            table.add_row(name, shown(value.value, name), shown(value.min, name), shown(value.max, name),
                          shown(value.target, name), str(value.samples), f"[{colour}]{value.status}[/]")
        Console().print(table)
        if broken:
            print(f"broken: {', '.join(broken)}")
    raise typer.Exit(1 if broken else 0)
