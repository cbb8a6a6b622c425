"""How results look: rich tables and progress bars on a terminal, plain lines in logs and CI, JSON with --json."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.progress import TaskID
from rich.table import Table

from reelcrew.cli.app import err
from reelcrew.pipeline import Progress
from reelcrew.results import ApprovalPolicy, CostReport, Estimate, ProductionSummary, RepairReport, StatusReport
from reelcrew.service import exit_code


def print_json(data) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def print_summaries(summaries: list[ProductionSummary], as_json: bool) -> int:
    """The run's summary table (or JSON); returns the exit code."""
    code = exit_code(summaries)
    if as_json:
        print_json({"productions": [s.as_dict() for s in summaries], "ok": code == 0,
                    **(summary_error(summaries, code) if code else {})})
    else:
        table = Table(title="reelcrew summary")
        for col in ("production", "status", "stage", "why", "clips ok/filt/fail/wait", "cost $", "final.mp4"):
            table.add_column(col, overflow="fold")
        for s in summaries:
            why = f"{s.failed_stage}: {s.error}" if s.error and s.failed_stage else (s.error or "")
            table.add_row(s.id, s.status, s.stage, why[:200],
                          f"{s.clips_done}/{s.clips_filtered}/{s.clips_failed}/{s.clips_paused}",
                          f"{s.cost_usd:.2f}", s.final or s.final_artifact or s.folder)
        Console(stderr=False).print(table)
        for s in summaries:  # whole paths, unwrapped, for copy and paste
            print(f"{s.id}: {s.final or s.folder}" + ("" if s.final else f" ({s.status})"))
    for s in summaries:
        if s.note:
            err.print(f"{s.id}: {s.note}")
        if s.final_artifact and s.final_artifact.startswith("s3://"):
            err.print(f"{s.id}: final stored at {s.final_artifact}", markup=False)
        if s.scenes_missing:  # whole commands, unwrapped, for copy and paste
            err.print(f"{s.id}: incomplete, scene(s) {', '.join(map(str, s.scenes_missing))} missing from the final")
            for command in s.retry_commands:
                err.print(f"  {command}", markup=False)
    return code


def summary_error(summaries: list[ProductionSummary], code: int) -> dict:
    """The `--json` error object of a run that exits non-zero, beside its productions."""
    unsettled = [s for s in summaries if s.status not in ("done", "queued", "running", "cancelled")]
    said = "; ".join(f"{s.id} is {s.status}" + (f" at {s.failed_stage}: {s.error}" if s.error else "")
                     for s in unsettled)
    return {"error": said or "a production did not finish",
            "fix": "`reelcrew status ID` shows why; `reelcrew resume` continues paused or interrupted ones, "
                   "`reelcrew retry ID` makes failed clips again (nothing done is paid twice)",
            "exit_code": code}


def print_status(report: StatusReport, as_json: bool, one: str | None) -> None:
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    print_summaries(list(report.productions), False)
    if one:
        table = Table(title=f"clips of {one}")
        for col in ("#", "status", "operation", "retries", "note"):
            table.add_column(col, overflow="fold")
        for c in report.productions[0].clips:
            note = (c.error or "") + (" [possible duplicate charge]" if c.possible_duplicate else "")
            table.add_row(str(c.index), c.status, c.operation or "", str(c.retries), note[:160])
        Console().print(table)


def print_repair(report: RepairReport) -> None:
    for line in report.fixed:
        err.print(f"[green]fixed[/] {line}")
    for line in report.needs_you:
        err.print(f"[yellow]needs you[/] {line}")
    if report.clean:
        err.print("ledger and files agree: nothing to repair")
    elif report.fixed:
        err.print("run `reelcrew resume` to finish the repaired work")


def print_cost(report: CostReport, as_json: bool) -> None:
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    for name in ("production", "day", "model"):
        table = Table(title=f"cost per {name}")
        table.add_column(name)
        table.add_column("USD", justify="right")
        for key, usd in sorted(getattr(report, name).items()):
            table.add_row(str(key), f"{usd:.2f}")
        Console().print(table)
    Console().print(f"total ${report.total_usd:.2f}; {report.possible_extra_charges} submit(s) "
                    f"with a possible extra charge")


class Bars:
    """Rich progress bars for stages and clips on a terminal; plain lines otherwise (logs, CI, --json)."""

    def __init__(self, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self.progress = (RichProgress(TextColumn("{task.description:>7}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=err) if enabled else None)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self):
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()

    def plan(self, what: str, total: int) -> None:
        if self.progress:
            if what in self.tasks:
                self.progress.update(self.tasks[what], total=total, completed=0)
            else:
                self.tasks[what] = self.progress.add_task(what, total=total)

    def advance(self, what: str) -> None:
        if self.progress and what in self.tasks:
            self.progress.advance(self.tasks[what])


def progress_lines(bars: Bars) -> Progress:
    """The pipeline's hooks, drawn as bars and one line per stage and clip on stderr."""

    def stage(pid: str, name: str) -> None:
        bars.advance("stages")
        err.print(f"[cyan]{pid}[/] → {name}")

    def clip(c) -> None:
        bars.advance("clips")
        colour = {"done": "green", "filtered": "yellow", "paused": "yellow"}.get(c.status.value, "red")
        extra = f" ({c.error})" if c.error and c.status.value != "done" else ""
        err.print(f"  [dim]{c.production_id}[/] clip {c.index}: [{colour}]{c.status.value}[/]{extra}")

    return Progress(plan=bars.plan, stage=stage, clip=clip)


def approval_policy(bars: Bars, yes: bool, budget_usd: float | None) -> ApprovalPolicy:
    """The CLI's approval step: the estimate on stderr, then --yes or a question on the terminal."""

    def announce(estimate: Estimate) -> None:
        samples = f" × {estimate.samples_per_clip} samples" if estimate.samples_per_clip > 1 else ""
        column = " at the video-only price" if estimate.price_column == "video_only" else ""
        err.print(f"[bold]Estimated cost:[/] ${estimate.usd:.2f} for {estimate.clips} clip(s){samples}, "
                  f"{estimate.seconds:.0f} s of video{column}, of which:")
        for name, usd in estimate.lines:  # every kind of spend on its own line (issue 15: every extra is money)
            err.print(f"  {name + ':':<42} ${usd:.4f}")

    def ask(estimate: Estimate) -> bool:
        if not sys.stdin or not sys.stdin.isatty():
            err.print("no terminal to confirm on: pass --yes to spend without asking")
            return False
        if bars.progress:
            bars.progress.stop()
        answer = typer.confirm("Submit these clips to Veo?", default=False, err=True)
        if bars.progress:
            bars.progress.start()
        return answer

    return ApprovalPolicy(yes=yes, budget_usd=budget_usd, ask=ask, announce=announce)
