"""The typer app behind `reelcrew` and `python run_integrated_pipeline.py`.

Production commands live here (run, resume, retry, status); upkeep commands (repair, cost,
doctor, config, assemble) in `cli_ops.py`. Every ReelcrewError becomes its message, its
fix and its exit code (2 for bad input or configuration, 1 for a failed production).
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from reelcrew.errors import ConfigError, ReelcrewError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="reelcrew: topics in, finished short videos out (CrewAI writers, Veo clips, one-pass assembly).")
err = Console(stderr=True, highlight=False, soft_wrap=True)


# Options shared by several commands, so their flags and help read the same everywhere.
OutputDirOpt = Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="Output folder (default: output/).")]
MockOpt = Annotated[bool, typer.Option("--mock", help="Mock LLM and mock Veo: offline, free, real clips.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Spend without asking for confirmation.")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="Settings file (default: config/pipeline.yaml).")]
BudgetOpt = Annotated[Optional[float], typer.Option("--budget-usd", min=0, help="Hard cap on this run's Veo spend.")]

class Aspect(str, Enum):
    landscape = "16:9"
    portrait = "9:16"


class Until(str, Enum):
    script = "script"
    seo = "seo"
    prompts = "prompts"
    clips = "clips"
    final = "final"


def settings_for(output_dir: Optional[Path] = None, config: Optional[Path] = None, mock: bool = False, **overrides):
    from reelcrew.settings import load_settings

    if mock:
        overrides.update(reelcrew_llm="mock", veo3_mock_mode=True)
    if output_dir is not None:
        overrides["reelcrew_output_dir"] = output_dir
    return load_settings(config, **overrides)


def open_store(settings):
    """The machine's ledger (or REELCREW_DB's), after importing an older ledger left in the output folder."""
    from reelcrew.files import ensure_writable
    from reelcrew.store import open_ledger

    out = settings.reelcrew_output_dir
    try:
        ensure_writable(out)
    except OSError as exc:
        raise ConfigError(f"output folder {out} is not writable ({exc.strerror})",
                          "pass --output-dir to a folder you can write, or fix its permissions") from None
    from reelcrew.logs import log_to_file, register_secret

    register_secret(settings.api_key())
    log_to_file(out / "reelcrew.log", settings.veo3_debug_mode)
    store = open_ledger(settings)
    import_folder_ledger(store, out)
    return store


def import_folder_ledger(store, out: Path) -> None:
    """An output folder's own `reelcrew.db` (from before the ledger moved to the state folder) is imported
    once, receipts included, then renamed `reelcrew.db.imported` so nothing is imported twice."""
    from filelock import FileLock

    from reelcrew.store import safe_url, sqlite_path

    old = out / "reelcrew.db"
    if not old.exists() or sqlite_path(store.url) == old.resolve():
        return
    with FileLock(str(out / ".reelcrew.db.import.lock")):
        if not old.exists():  # another process imported it while we waited
            return
        counts = store.import_ledger(str(old), folder=out)
        for name in ("reelcrew.db", "reelcrew.db-wal", "reelcrew.db-shm", "reelcrew.receipts.jsonl"):
            part = out / name
            if part.exists():
                part.rename(part.with_name(part.name + ".imported"))
    moved = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
    err.print(f"imported the older ledger {old} into {safe_url(store.url)} ({moved or 'nothing new'}); "
              f"kept as {old.name}.imported")


def require_production(store, production_id: str):
    """The production row, or an InputError that says where to find the ids."""
    from reelcrew.errors import InputError

    prod = store.production(production_id)
    if prod is None:
        raise InputError(f"no production {production_id!r} in this ledger", "run `reelcrew status` to list the ids")
    return prod


def interrupted() -> None:
    err.print("[yellow]interrupted:[/] finished work and operation receipts are in the ledger; "
              "run `reelcrew resume` to continue (nothing is paid twice)")
    raise typer.Exit(130)


def fail(exc: ReelcrewError) -> None:
    err.print(f"[bold red]error:[/] {exc.problem}")
    if exc.fix:
        err.print(f"[bold]fix:[/] {exc.fix}")
    raise typer.Exit(exc.exit_code)


def print_summaries(summaries, as_json: bool) -> int:
    failed = any(s.status in ("failed",) for s in summaries)
    paused = any(s.status in ("paused", "interrupted") for s in summaries)
    if as_json:
        print(json.dumps({"productions": [s.as_dict() for s in summaries], "ok": not failed and not paused},
                         ensure_ascii=False, indent=2))
    else:
        table = Table(title="reelcrew summary")
        for col in ("production", "status", "stage/why", "clips ok/filt/fail/wait", "cost $", "final.mp4"):
            table.add_column(col, overflow="fold")
        for s in summaries:
            why = f"{s.failed_stage}: {s.error}" if s.error else ""
            table.add_row(s.id, s.status, why[:200], f"{s.clips_done}/{s.clips_filtered}/{s.clips_failed}/{s.clips_paused}",
                          f"{s.cost_usd:.2f}", s.final or s.folder)
        Console(stderr=False).print(table)
        for s in summaries:  # whole paths, unwrapped, for copy and paste
            print(f"{s.id}: {s.final or s.folder}" + ("" if s.final else f" ({s.status})"))
    for s in summaries:
        if s.note:
            err.print(f"{s.id}: {s.note}")
    return 1 if failed or paused else 0


class Bars:
    """Rich progress bars for stages and clips on a terminal; plain lines otherwise (logs, CI, --json)."""

    def __init__(self, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = (Progress(TextColumn("{task.description:>7}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=err) if enabled else None)
        self.tasks: dict[str, int] = {}

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


def make_progress(as_json: bool, yes: bool, bars: Bars | None = None):
    from reelcrew.pipeline import Progress

    bars = bars or Bars(False)

    def stage(pid: str, name: str) -> None:
        bars.advance("stages")
        err.print(f"[cyan]{pid}[/] → {name}")

    def clip(c) -> None:
        bars.advance("clips")
        colour = {"done": "green", "filtered": "yellow", "paused": "yellow"}.get(c.status.value, "red")
        extra = f" ({c.error})" if c.error and c.status.value != "done" else ""
        err.print(f"  [dim]{c.production_id}[/] clip {c.index}: [{colour}]{c.status.value}[/]{extra}")

    def confirm(usd: float, count: int, seconds: float) -> bool:
        err.print(f"[bold]Estimated Veo cost:[/] ${usd:.2f} for {count} clip(s), {seconds:.0f} s of video.")
        if yes:
            return True
        if not sys.stdin or not sys.stdin.isatty():
            err.print("no terminal to confirm on: pass --yes to spend without asking")
            return False
        if bars.progress:
            bars.progress.stop()
        answer = typer.confirm("Submit these clips to Veo?", default=False, err=True)
        if bars.progress:
            bars.progress.start()
        return answer

    return Progress(plan=bars.plan, stage=stage, clip=clip, confirm=confirm)


def run_productions(settings, store, prods, until: str = "final", *, as_json: bool = False, yes: bool = False,
                    budget_usd: float | None = None, retry_clips: set[tuple[str, int]] | None = None) -> int:
    """Run the pipeline (progress bars on a terminal) and print the summary; returns the exit code."""
    from reelcrew.pipeline import Pipeline

    with Bars(err.is_terminal and not as_json) as bars:
        pipeline = Pipeline(settings, store, make_progress(as_json, yes, bars), budget_usd)
        summaries = pipeline.run(prods, until, retry_clips)
    return print_summaries(summaries, as_json)


@app.command()
def run(
    topic: list[str] = typer.Option([], "--topic", "-t", help="A topic (repeatable)."),
    topics_file: Optional[Path] = typer.Option(None, "--topics-file", help="One topic a line (like the old prompts.txt)."),
    mock: MockOpt = False,
    scenes: Optional[int] = typer.Option(None, "--scenes", min=1, max=30, help="Scenes (clips) per video."),
    aspect: Optional[Aspect] = typer.Option(None, "--aspect", help="16:9 or 9:16."),
    language: Optional[str] = typer.Option(None, "--language", help="auto, en, zh, ..."),
    output_dir: OutputDirOpt = None,
    until: Until = typer.Option(Until.final, "--until", help="Stop after this stage."),
    as_json: JsonOpt = False,
    crews_dir: Optional[Path] = typer.Option(None, "--crews-dir", help="Another copy of the agents' YAML."),
    yes: YesOpt = False,
    budget_usd: BudgetOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Turn topics into videos (script → seo → prompts → clips → final). Re-running resumes."""
    try:
        from reelcrew.pipeline import Pipeline, read_topics

        topics = read_topics(topic, topics_file)
        settings = settings_for(output_dir, config, mock, scenes=scenes, aspect_ratio=aspect.value if aspect else None,
                                language=language, crews_dir=crews_dir)
        if crews_dir is not None and not crews_dir.is_dir():
            raise ConfigError(f"crews folder {crews_dir} does not exist", "point --crews-dir at a copy of crews/")
        store = open_store(settings)
        code = run_productions(settings, store, Pipeline(settings, store).plan(topics), until.value, as_json=as_json,
                               yes=yes, budget_usd=budget_usd)
    except ReelcrewError as exc:
        fail(exc)
    except KeyboardInterrupt:
        interrupted()
    raise typer.Exit(code)


@app.command()
def resume(
    output_dir: OutputDirOpt = None,
    mock: MockOpt = False,
    as_json: JsonOpt = False,
    yes: YesOpt = False,
    budget_usd: BudgetOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Finish every unfinished production in the ledger: done stages and clips are reused, in-flight ones re-attached."""
    try:
        settings = settings_for(output_dir, config, mock)
        store = open_store(settings)
        todo = [p for p in store.all_productions() if p.status.value != "done"]
        if not todo:
            err.print("nothing to resume: every production is done")
            raise typer.Exit(0)
        code = run_productions(settings, store, todo, as_json=as_json, yes=yes, budget_usd=budget_usd)
    except ReelcrewError as exc:
        fail(exc)
    except KeyboardInterrupt:
        interrupted()
    raise typer.Exit(code)


@app.command()
def retry(
    production: str = typer.Argument(..., help="Production id (see `reelcrew status`)."),
    clip: Optional[int] = typer.Option(None, "--clip", help="Only this clip (1-based); default: every failed or filtered one."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="A new prompt for --clip (e.g. after a safety filter)."),
    output_dir: OutputDirOpt = None,
    mock: MockOpt = False,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Regenerate a failed, filtered or ambiguous clip (optionally with an edited prompt), then re-cut the video."""
    try:
        from reelcrew.errors import InputError
        from reelcrew.models import PromptList

        settings = settings_for(output_dir, config, mock)
        store = open_store(settings)
        prod = require_production(store, production)
        clips = store.production_clips(production)
        targets = {c.index for c in clips if c.status.value in ("failed", "filtered", "ambiguous", "paused")}
        if clip is not None:
            if clip not in {c.index for c in clips}:
                raise InputError(f"production {production} has no clip {clip}", f"choose 1..{len(clips)}")
            targets = {clip}
        if prompt is not None:
            if clip is None:
                raise InputError("--prompt needs --clip", "say which clip the new prompt is for")
            prompts = PromptList.model_validate_json(store.stage(production, "prompts"))
            prompts.prompts[clip - 1].prompt = prompt
            store.save_stage(production, "prompts", prompts.model_dump_json())
            folder = Path(prod.folder) if prod.folder else settings.reelcrew_output_dir / production
            (folder / "prompts.json").unlink(missing_ok=True)
        store.delete_stage(production, "final")
        code = run_productions(settings, store, [prod], as_json=as_json, yes=yes,
                               retry_clips={(production, i) for i in targets})
    except ReelcrewError as exc:
        fail(exc)
    except KeyboardInterrupt:
        interrupted()
    raise typer.Exit(code)


@app.command()
def status(
    production: Optional[str] = typer.Argument(None),
    output_dir: OutputDirOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """What the ledger knows: productions, their stages and clips."""
    try:
        from reelcrew.pipeline import Pipeline

        settings = settings_for(output_dir, config)
        store = open_store(settings)
        pipeline = Pipeline(settings, store)
        ids = [production] if production else [p.id for p in store.all_productions()]
        if production:
            require_production(store, production)
        summaries = [pipeline.summary(i) for i in ids]
        if as_json:
            data = []
            for s in summaries:
                d = s.as_dict()
                d["clips"] = [{"index": c.index, "status": c.status.value, "operation": c.operation_name,
                               "error": c.error, "retries": c.retries, "possible_duplicate": c.possible_duplicate}
                              for c in store.production_clips(s.id)]
                data.append(d)
            print(json.dumps({"productions": data}, ensure_ascii=False, indent=2))
            raise typer.Exit(0)
        print_summaries(summaries, False)
        if production:
            table = Table(title=f"clips of {production}")
            for col in ("#", "status", "operation", "retries", "note"):
                table.add_column(col, overflow="fold")
            for c in store.production_clips(production):
                note = (c.error or "") + (" [possible duplicate charge]" if c.possible_duplicate else "")
                table.add_row(str(c.index), c.status.value, c.operation_name or "", str(c.retries), note[:160])
            Console().print(table)
    except ReelcrewError as exc:
        fail(exc)


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


def main() -> None:
    from reelcrew import cli_ops  # noqa: F401  (registers the upkeep commands)

    import signal

    def terminate(signum, frame):  # SIGTERM stops like Ctrl-C: receipts kept, leases released
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        app(args=expand_multi_value(sys.argv[1:]), prog_name="reelcrew")
    except KeyboardInterrupt:  # outside a command's own handling (e.g. during start-up)
        sys.exit(130)


if __name__ == "__main__":
    main()
