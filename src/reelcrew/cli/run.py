"""Production commands: run, resume, retry. Each parses its flags, calls the service, prints the summary."""

from __future__ import annotations

from pathlib import Path

import typer

from reelcrew import service
from reelcrew.cli.app import (
    Aspect,
    BudgetOpt,
    ConfigOpt,
    Continuity,
    JsonOpt,
    MockOpt,
    OutputDirOpt,
    Until,
    YesOpt,
    app,
    err,
    open_store,
    reports_errors,
    settings_for,
)
from reelcrew.cli.render import Bars, approval_policy, print_summaries, progress_lines
from reelcrew.errors import ConfigError
from reelcrew.models import ProductionStatus
from reelcrew.service.ledger import productions_in, require_output_folder


def run_productions(settings, store, prods, until: str = "final", *, as_json: bool = False, yes: bool = False,
                    budget_usd: float | None = None, retry_clips: set[tuple[str, int]] | None = None,
                    recut: bool = False, detach: bool = False) -> int:
    """Run through the service (progress bars on a terminal) and print the summary; returns the exit code.
    With a broker (REELCREW_BROKER) the workers run it: enqueue, then follow the ledger (or return, `--detach`)."""
    if settings.reelcrew_broker:
        from reelcrew.cli.queued import run_on_workers

        return run_on_workers(settings, store, prods, until, as_json=as_json, yes=yes, budget_usd=budget_usd,
                              detach=detach, retry_clips=retry_clips, recut=recut)
    with Bars(err.is_terminal and not as_json) as bars:
        summaries = service.run(settings, prods, until, progress_lines(bars),
                                approval_policy(bars, yes, budget_usd), store, retry_clips, recut)
    return print_summaries(summaries, as_json)


@app.command()
@reports_errors(resumable=True)
def run(
    topic: list[str] = typer.Option([], "--topic", "-t", help="A topic (repeatable)."),
    topics_file: Path | None = typer.Option(None, "--topics-file", help="One topic a line (like the old prompts.txt)."),
    mock: MockOpt = False,
    scenes: int | None = typer.Option(None, "--scenes", min=1, max=30, help="Scenes (clips) per video."),
    aspect: Aspect | None = typer.Option(None, "--aspect", help="16:9 or 9:16."),
    language: str | None = typer.Option(None, "--language", help="auto, en, zh, ..."),
    continuity: Continuity | None = typer.Option(None, "--continuity",
                                                 help="How clips hold together (setting `continuity`)."),
    reference_image: list[Path] = typer.Option(
        [], "--reference-image", help="With --continuity references: an image of a person or object sent with "
        "every clip (repeatable, up to 3; PNG or JPEG)."),
    output_dir: OutputDirOpt = None,
    until: Until = typer.Option(Until.final, "--until", help="Stop after this stage."),
    as_json: JsonOpt = False,
    crews_dir: Path | None = typer.Option(None, "--crews-dir", help="Another copy of the agents' YAML."),
    yes: YesOpt = False,
    budget_usd: BudgetOpt = None,
    config: ConfigOpt = None,
    detach: bool = typer.Option(False, "--detach", help="With a broker: enqueue, print the ids and return."),
) -> None:
    """Turn topics into videos (script → seo → prompts → clips → final). Re-running resumes."""
    from reelcrew.pipeline import read_topics

    topics = read_topics(topic, topics_file)
    settings = settings_for(output_dir, config, mock, scenes=scenes, aspect_ratio=aspect.value if aspect else None,
                            language=language, crews_dir=crews_dir,
                            continuity=continuity.value if continuity else None,
                            reference_images=reference_image or None)
    if crews_dir is not None and not crews_dir.is_dir():
        raise ConfigError(f"crews folder {crews_dir} does not exist", "point --crews-dir at a copy of crews/")
    store = open_store(settings)
    prods = service.plan(settings, topics, store)
    # edits of a production this run continues; a rendered one is left alone (`assemble` re-cuts it)
    service.adopt_edits(settings, [p for p in prods if not (p.status == ProductionStatus.done
                                                            and store.stage(p.id, "final"))], store, err.print)
    code = run_productions(settings, store, prods, until.value, as_json=as_json, yes=yes, budget_usd=budget_usd,
                           detach=detach)
    raise typer.Exit(code)


@app.command()
@reports_errors(resumable=True)
def resume(
    output_dir: OutputDirOpt = None,
    mock: MockOpt = False,
    as_json: JsonOpt = False,
    yes: YesOpt = False,
    budget_usd: BudgetOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Finish every unfinished production in the ledger: done stages and clips reused, in-flight ones re-attached."""
    settings = settings_for(output_dir, config, mock)
    if output_dir is not None:  # a mistyped -o is an error, never a new empty folder and ledger
        require_output_folder(settings)
    store = open_store(settings)
    todo = service.unfinished(settings, store)
    if output_dir is not None:
        require_output_folder(settings, store)
        mine = {p.id for p in productions_in(settings, store)}
        todo = [p for p in todo if p.id in mine]
    if not todo:
        err.print("nothing to resume: every production is done, incomplete or cancelled "
                  "(`reelcrew status` lists them; `reelcrew retry ID` brings an incomplete one's scenes back)")
        raise typer.Exit(0)
    service.adopt_edits(settings, todo, store, err.print)
    code = run_productions(settings, store, todo, as_json=as_json, yes=yes, budget_usd=budget_usd)
    raise typer.Exit(code)


@app.command()
@reports_errors(resumable=True)
def retry(
    production: str = typer.Argument(..., help="Production id (see `reelcrew status`)."),
    clip: int | None = typer.Option(None, "--clip",
                                    help="Only this clip (1-based); default: every failed or filtered one."),
    prompt: str | None = typer.Option(None, "--prompt", help="A new prompt for --clip (e.g. after a safety filter)."),
    output_dir: OutputDirOpt = None,
    mock: MockOpt = False,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Regenerate a failed, filtered or ambiguous clip (optionally with an edited prompt), then re-cut the video."""
    settings = settings_for(output_dir, config, mock)
    store = open_store(settings)
    prod, targets = service.prepare_retry(settings, production, clip, prompt, store, err.print)
    code = run_productions(settings, store, [prod], as_json=as_json, yes=yes, retry_clips=targets)
    raise typer.Exit(code)


@app.command()
@reports_errors
def cancel(
    production: str = typer.Argument(..., help="Production id (see `reelcrew status`)."),
    output_dir: OutputDirOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Stop a production: nothing new is submitted; operations already at Veo finish and are recorded."""
    settings = settings_for(output_dir, config)
    summary = service.cancel(settings, production, open_store(settings))
    print_summaries([summary], as_json)
    raise typer.Exit(0)
