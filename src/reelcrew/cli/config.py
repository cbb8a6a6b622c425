"""`config show` (effective settings and where each came from, secrets masked) and `config init` (.env template)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from reelcrew.cli.app import ConfigOpt, JsonOpt, OutputDirOpt, config_app, err, reports_errors, settings_for
from reelcrew.errors import InputError


@config_app.command("show")
@reports_errors
def config_show(
    config: ConfigOpt = None,
    output_dir: OutputDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Effective settings and where each came from (env, .env, pipeline.yaml, default); secrets masked."""
    from reelcrew.settings import masked, setting_sources

    settings = settings_for(output_dir, config)
    values, sources = masked(settings), setting_sources(settings)
    if as_json:
        report = {name: {"value": value, "from": sources.get(name, "default")} for name, value in values.items()}
        print(json.dumps(report, ensure_ascii=False, indent=2, default=str))
        return
    table = Table(title="effective settings")
    for col in ("setting", "value", "from"):
        table.add_column(col, overflow="fold")
    for name, value in values.items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
        table.add_row(name.upper() if not isinstance(value, dict) else name, shown[:120], sources.get(name, "default"))
    Console().print(table)


@config_app.command("init")
@reports_errors
def config_init(path: Path = typer.Option(Path(".env"), "--path"),
                force: bool = typer.Option(False, "--force"), as_json: JsonOpt = False) -> None:
    """Write a commented .env template (keys left empty)."""
    from reelcrew.defaults import env_template
    from reelcrew.settings import env_template_from_fields

    if path.exists() and not force:
        raise InputError(f"{path} already exists", "pass --force to overwrite it, or --path to write elsewhere")
    template = env_template() or env_template_from_fields()
    path.write_text(template, encoding="utf-8")
    if as_json:
        print(json.dumps({"wrote": str(path)}))
        return
    err.print(f"wrote {path}; fill in your key, never commit it")
