"""`assemble`: re-cut without paying again, from a production's clips or from loose files."""

from __future__ import annotations

from pathlib import Path

import typer

from reelcrew import service
from reelcrew.cli.app import Aspect, ConfigOpt, OutputDirOpt, app, err, fail, open_store, settings_for
from reelcrew.cli.run import run_productions
from reelcrew.errors import ReelcrewError


@app.command()
def assemble(
    production: str | None = typer.Argument(None, help="Re-cut a production (after editing subtitles or style)."),
    clips: list[Path] = typer.Option([], "--clips", help="Loose clip files, in order."),
    captions: list[str] = typer.Option([], "--captions", help="One caption per clip, in order."),
    watermark: str | None = typer.Option(None, "--watermark", help="Watermark text ('' for none)."),
    aspect: Aspect = typer.Option(Aspect.landscape, "--aspect"),
    crossfade: float | None = typer.Option(None, "--crossfade", help="Crossfade seconds (0 = cut)."),
    music: Path | None = typer.Option(None, "--music"),
    output: Path | None = typer.Option(None, "--output"),
    output_dir: OutputDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Re-cut without paying again: from a production folder or from loose files."""
    try:
        settings = settings_for(output_dir, config)
        if watermark is not None:
            settings.watermark.text = watermark or None
        if crossfade is not None:
            settings.transitions.kind = "crossfade" if crossfade > 0 else "none"
            settings.transitions.duration = crossfade or settings.transitions.duration
        if music is not None:
            settings.music.file = str(music)
        if production:
            store = open_store(settings)
            prod = service.require_production(store, production)
            store.delete_stage(production, "final")
            raise typer.Exit(run_productions(settings, store, [prod]))
        result = service.assemble_files(settings, clips, captions, aspect.value, output or Path("out.mp4"))
    except ReelcrewError as exc:
        fail(exc)
    err.print(f"wrote {result.output} ({result.duration:.2f}s) and {result.subtitles}")
