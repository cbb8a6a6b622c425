"""`assemble`: re-cut without paying again, from a production's clips or from loose files."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError

from reelcrew import service
from reelcrew.assemble.hooks import load_edit
from reelcrew.cli.app import (
    Aspect,
    ConfigOpt,
    JsonOpt,
    OutputDirOpt,
    app,
    err,
    open_store,
    reports_errors,
    settings_for,
)
from reelcrew.cli.render import print_json
from reelcrew.cli.run import run_productions
from reelcrew.errors import InputError
from reelcrew.identity import require_same_mode
from reelcrew.preflight import Texts, check_start, check_texts
from reelcrew.service.ledger import production_folder


@app.command()
@reports_errors
def assemble(
    production: str | None = typer.Argument(None, help="Re-cut a production (after editing subtitles or style)."),
    clips: list[Path] = typer.Option([], "--clips", help="Loose clip files, in order."),
    captions: list[str] = typer.Option([], "--captions", help="One caption per clip, in order."),
    watermark: str | None = typer.Option(None, "--watermark", help="Watermark text ('' for none)."),
    aspect: Aspect = typer.Option(Aspect.landscape, "--aspect"),
    crossfade: float | None = typer.Option(None, "--crossfade", help="Crossfade seconds (0 = cut)."),
    transition: str | None = typer.Option(None, "--transition", help="Transition kind (fade, wipeleft, "
                                          "circleopen, ...; see transitions.kind)."),
    subtitle_style: str | None = typer.Option(None, "--subtitle-style", help="static, karaoke or pop."),
    music: Path | None = typer.Option(None, "--music"),
    edit: str | None = typer.Option(None, "--edit", help="Edit function package.module:function "
                                    "(overrides render.edit; '' for none)."),
    output: Path | None = typer.Option(None, "--output"),
    output_dir: OutputDirOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-cut without paying again: from a production folder or from loose files."""
    settings = settings_for(output_dir, config)
    if watermark is not None:
        settings.watermark.text = watermark or None
    if edit is not None:
        settings.render.edit = edit or None
    load_edit(settings.render.edit)  # pre-flight: exit 2 on a missing module or function
    if crossfade is not None:
        settings.transitions.kind = "crossfade" if crossfade > 0 else "none"
        settings.transitions.duration = crossfade or settings.transitions.duration
    if transition is not None or subtitle_style is not None:
        try:
            settings.transitions = settings.transitions.model_validate(
                {**settings.transitions.model_dump(), **({"kind": transition} if transition else {})})
            settings.subtitles = settings.subtitles.model_validate(
                {**settings.subtitles.model_dump(), **({"style": subtitle_style} if subtitle_style else {})})
        except ValidationError as exc:
            raise InputError(f"--transition/--subtitle-style: {exc.errors()[0]['msg']}",
                             "use a kind listed in config/pipeline.yaml and static, karaoke or pop") from None
    if music is not None:
        settings.music.file = str(music)
    settings._overrides |= {name for name, flag in (("music", music), ("watermark", watermark), ("render", edit),
                                                    ("transitions", transition)) if flag is not None}
    if production:
        store = open_store(settings)
        prod = service.require_production(store, production)
        # pre-flight before the old final is let go: a bad --music or colour leaves the production as it was
        check_start(settings, "final", {prod.language}, [production_folder(settings, prod)])
        service.adopt_edits(settings, [prod], store, err.print)  # invalid: exit 2 before the final is dropped
        require_same_mode(settings, prod)  # it is re-cut in the mode it was made in; refused: the other one
        raise typer.Exit(run_productions(settings, store, [prod], recut=True, as_json=as_json))
    check_start(settings, "final", folders=[(output or Path("out.mp4")).resolve().parent])
    check_texts(settings, Texts("assemble", list(captions)))
    result = service.assemble_files(settings, clips, captions, aspect.value, output or Path("out.mp4"))
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    err.print(f"wrote {result.output} ({result.duration:.2f}s, {result.render_path} path), {result.subtitles} and "
              f"{result.output.with_suffix('.ass')}")
