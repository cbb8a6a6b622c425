"""Upkeep commands: repair, cost, doctor, config show/init, and assemble (re-cut without paying again)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from reelcrew.cli import (Aspect, ConfigOpt, JsonOpt, MockOpt, OutputDirOpt, app, err, fail, open_store,
                          require_production, run_productions, settings_for)
from reelcrew.files import ensure_writable
from reelcrew.errors import InputError, ReelcrewError

config_app = typer.Typer(help="Show or initialise settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")
ledger_app = typer.Typer(help="The ledger: import an older one.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@app.command()
def repair(
    output_dir: OutputDirOpt = None,
    mock: MockOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Find clips marked done whose file is missing or invalid, and clips stuck past their timeout; fix or report."""
    try:
        from reelcrew.files import owner_alive, sha256_file
        from reelcrew.models import ClipStatus
        from reelcrew.video.retention import GONE, gone_message, past_retention

        settings = settings_for(output_dir, config, mock)
        store = open_store(settings)
        fixed, reported = list(store.replay_journal()), []
        now = time.time()
        for row in store.all_clip_rows():
            key, status, path = row["key"], row["status"], row["path"]
            label = f"{row['production_id']} clip {row['idx']}"
            gone = gone_message(row["production_id"], row["idx"])
            expired = past_retention(row["operation_name"], row["submitted_at"], now)
            if status == "done" and (not path or not Path(path).exists() or (row["sha256"] and sha256_file(Path(path)) != row["sha256"])):
                if row["operation_name"] and expired:  # nothing left to fetch: say so instead of trying
                    store.update_clip(key, status=ClipStatus.failed, path=None, lease_owner=None, lease_until=0.0,
                                      error=f"file missing and {gone}")
                    reported.append(f"{label}: file missing and {gone}")
                elif row["operation_name"]:
                    store.update_clip(key, status=ClipStatus.submitted, path=None, lease_owner=None, lease_until=0.0,
                                      error="file missing: will be downloaded again from its operation")
                    fixed.append(f"{label}: file missing → re-attach {row['operation_name']} and download again")
                else:
                    store.update_clip(key, status=ClipStatus.pending, path=None, error="file missing: regenerate")
                    fixed.append(f"{label}: file missing, no operation → marked for regeneration")
            elif status in ("submitting",) and not owner_alive(row["lease_owner"]) and not row["operation_name"]:
                store.update_clip(key, status=ClipStatus.pending, possible_duplicate=True, lease_owner=None,
                                  error="interrupted between submit and receipt: will resubmit, flagged possible duplicate")
                fixed.append(f"{label}: stuck in submitting (process gone) → pending, flagged possible duplicate")
            elif status in ("submitted", "downloading", "failed") and (expired or GONE in (row["error"] or "")):
                if status != "failed":
                    store.update_clip(key, status=ClipStatus.failed, lease_owner=None, lease_until=0.0, error=gone)
                reported.append(f"{label}: {gone}")
            elif status in ("submitted", "downloading") and row["submitted_at"] and now - row["submitted_at"] > settings.operation_timeout:
                reported.append(f"{label}: operation {row['operation_name']} older than OPERATION_TIMEOUT; "
                                f"`reelcrew resume` polls it once more, `reelcrew retry` regenerates it")
            elif status == "failed" and row["operation_name"] and "download" in (row["error"] or ""):
                store.update_clip(key, status=ClipStatus.submitted, lease_owner=None, lease_until=0.0)
                fixed.append(f"{label}: download had failed → re-attach and download again")
        for prod in store.all_productions():
            folder = Path(prod.folder) if prod.folder else settings.reelcrew_output_dir / prod.id
            if store.stage(prod.id, "final") and not (folder / "final.mp4").exists():
                store.delete_stage(prod.id, "final")
                store.set_production_status(prod.id, prod.status.__class__("pending"))
                fixed.append(f"{prod.id}: final.mp4 missing → will be rendered again")
            if any(c.status.value != "done" for c in store.production_clips(prod.id)) and prod.status.value == "done":
                store.set_production_status(prod.id, prod.status.__class__("pending"))
        for line in fixed:
            err.print(f"[green]fixed[/] {line}")
        for line in reported:
            err.print(f"[yellow]needs you[/] {line}")
        if not fixed and not reported:
            err.print("ledger and files agree: nothing to repair")
        elif fixed:
            err.print("run `reelcrew resume` to finish the repaired work")
    except ReelcrewError as exc:
        fail(exc)


@ledger_app.command("import")
def ledger_import(
    source: str = typer.Argument(..., help="An older ledger: a reelcrew.db file, or a database URL."),
    output_dir: OutputDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Copy an older ledger (productions, stages, clips, receipts, costs, events) into the one in use.

    Nothing here is overwritten; a clip that lacks a receipt or a file the older ledger has takes it.
    Works from SQLite into PostgreSQL (set REELCREW_DB to the target)."""
    try:
        from reelcrew.store import safe_url

        settings = settings_for(output_dir, config)
        store = open_store(settings)
        if "://" not in source and not Path(source).exists():
            raise InputError(f"no ledger at {source}", "give the path of a reelcrew.db file or a database URL")
        folder = Path(source).resolve().parent if "://" not in source else None
        counts = store.import_ledger(source, folder=folder)
        moved = ", ".join(f"{n} {what}" for what, n in counts.items()) or "nothing"
        err.print(f"imported into {safe_url(store.url)}: {moved}")
        err.print("run `reelcrew resume` to finish what it had in flight (receipts are re-attached, never re-paid)")
    except ReelcrewError as exc:
        fail(exc)


@app.command()
def cost(
    output_dir: OutputDirOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """The cost ledger: per production, per day, per model."""
    try:
        settings = settings_for(output_dir, config)
        store = open_store(settings)
        rows = store.cost_rows()
        groups: dict[str, dict[str, float]] = {"production": {}, "day": {}, "model": {}}
        for r in rows:
            for name, key in (("production", r["production_id"]), ("day", r["day"]), ("model", r["model"])):
                groups[name][key] = groups[name].get(key, 0.0) + r["usd"]
        ambiguous = [r for r in store.receipts() if r["outcome"] == "ambiguous" or r["possible_duplicate"]]
        if as_json:
            print(json.dumps({"total_usd": round(sum(r["usd"] for r in rows), 4), **groups,
                              "possible_extra_charges": len(ambiguous)}, indent=2))
            return
        for name, data in groups.items():
            table = Table(title=f"cost per {name}")
            table.add_column(name)
            table.add_column("USD", justify="right")
            for key, usd in sorted(data.items()):
                table.add_row(str(key), f"{usd:.2f}")
            Console().print(table)
        Console().print(f"total ${sum(r['usd'] for r in rows):.2f}; {len(ambiguous)} submit(s) with a possible extra charge")
    except ReelcrewError as exc:
        fail(exc)


@app.command()
def doctor(
    output_dir: OutputDirOpt = None,
    mock: MockOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Checks before spending: keys, Veo and Gemini reachable, ffmpeg, a subtitle font, output folder, disk space."""
    checks: list[tuple[str, bool, str]] = []
    try:
        settings = settings_for(output_dir, config, mock)
    except ReelcrewError as exc:
        fail(exc)
    real = not settings.veo3_mock_mode or not settings.mock_llm
    if real:
        from reelcrew.google_auth import credentials_summary

        try:
            detail = credentials_summary(settings)
            ok = detail != "none"
            if not ok:
                detail = "set GEMINI_API_KEY or Vertex settings, or use --mock"
        except ReelcrewError as exc:
            ok, detail = False, f"{exc.problem}; {exc.fix}"
        checks.append(("credentials", ok, detail))
        if ok:
            checks.append(_reachable(settings))
    else:
        checks.append(("credentials", True, "mock mode: none needed"))
    try:
        from reelcrew.media import ffmpeg_exe

        checks.append(("ffmpeg", True, ffmpeg_exe()))
    except Exception as exc:
        checks.append(("ffmpeg", False, f"{exc}; reinstall imageio-ffmpeg"))
    try:
        from reelcrew.assemble.fonts import find_font

        sample = "中文字幕 Subtitles" if settings.language in ("auto", "zh") else "Subtitles"
        font = find_font(sample, settings.subtitles.font)
        checks.append(("subtitle font", True, f"{font.path} covers {sample!r}"))
    except ReelcrewError as exc:
        checks.append(("subtitle font", False, f"{exc.problem}; {exc.fix}"))
    try:
        from reelcrew.store import open_ledger, safe_url

        store = open_ledger(settings)
        checks.append(("ledger", True, f"{safe_url(store.url)} ({store.in_flight()} operation(s) in flight)"))
    except ReelcrewError as exc:
        checks.append(("ledger", False, f"{exc.problem}; {exc.fix}"))
    out = settings.reelcrew_output_dir
    try:
        ensure_writable(out)
        free = shutil.disk_usage(out).free / 2**30
        checks.append(("output folder", True, f"{out.resolve()} writable"))
        checks.append(("disk space", free > 2, f"{free:.1f} GiB free" + ("" if free > 2 else "; free some space")))
    except OSError as exc:
        checks.append(("output folder", False, f"{out}: {exc.strerror}; choose another --output-dir"))
    table = Table(title="reelcrew doctor")
    for col in ("check", "ok", "detail"):
        table.add_column(col, overflow="fold")
    for name, ok, detail in checks:
        table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]", detail)
    Console().print(table)
    raise typer.Exit(0 if all(ok for _, ok, _ in checks) else 2)


def _reachable(settings) -> tuple[str, bool, str]:
    try:
        from google.genai import types

        from reelcrew.google_auth import genai_client

        client = genai_client(settings, types.HttpOptions(timeout=10_000))
        client.models.get(model=settings.gemini_model_id)
        return ("Gemini reachable", True, settings.gemini_model_id)
    except Exception as exc:
        return ("Gemini reachable", False, f"{type(exc).__name__}: {str(exc)[:160]}")


@config_app.command("show")
def config_show(
    config: ConfigOpt = None,
    output_dir: OutputDirOpt = None,
) -> None:
    """Effective settings and where each came from (env, .env, pipeline.yaml, default); secrets masked."""
    from reelcrew.settings import masked, setting_sources

    try:
        settings = settings_for(output_dir, config)
    except ReelcrewError as exc:
        fail(exc)
    values, sources = masked(settings), setting_sources(settings)
    table = Table(title="effective settings")
    for col in ("setting", "value", "from"):
        table.add_column(col, overflow="fold")
    for name, value in values.items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
        table.add_row(name.upper() if not isinstance(value, dict) else name, shown[:120], sources.get(name, "default"))
    Console().print(table)


@config_app.command("init")
def config_init(path: Path = typer.Option(Path(".env"), "--path"), force: bool = typer.Option(False, "--force")) -> None:
    """Write a commented .env template (keys left empty)."""
    from reelcrew.defaults import env_template
    from reelcrew.settings import env_template_from_fields

    if path.exists() and not force:
        fail(InputError(f"{path} already exists", "pass --force to overwrite it, or --path to write elsewhere"))
    template = env_template() or env_template_from_fields()
    path.write_text(template, encoding="utf-8")
    err.print(f"wrote {path}; fill in your key, never commit it")


@app.command()
def assemble(
    production: Optional[str] = typer.Argument(None, help="Re-cut a production (after editing subtitles or style)."),
    clips: list[Path] = typer.Option([], "--clips", help="Loose clip files, in order."),
    captions: list[str] = typer.Option([], "--captions", help="One caption per clip, in order."),
    watermark: Optional[str] = typer.Option(None, "--watermark", help="Watermark text ('' for none)."),
    aspect: Aspect = typer.Option(Aspect.landscape, "--aspect"),
    crossfade: Optional[float] = typer.Option(None, "--crossfade", help="Crossfade seconds (0 = cut)."),
    transition: Optional[str] = typer.Option(None, "--transition", help="Transition kind (fade, wipeleft, "
                                             "circleopen, ...; see transitions.kind)."),
    subtitle_style: Optional[str] = typer.Option(None, "--subtitle-style", help="static, karaoke or pop."),
    music: Optional[Path] = typer.Option(None, "--music"),
    edit: Optional[str] = typer.Option(None, "--edit", help="Edit function package.module:function "
                                       "(overrides render.edit; '' for none)."),
    output: Optional[Path] = typer.Option(None, "--output"),
    output_dir: OutputDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Re-cut without paying again: from a production folder or from loose files."""
    try:
        from reelcrew.assemble import CutClip
        from pydantic import ValidationError

        from reelcrew.assemble.hooks import load_edit
        from reelcrew.assemble.production import render_with_edit, spec_from_settings, write_sidecars
        from reelcrew.models import frame_size

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
        if production:
            store = open_store(settings)
            prod = require_production(store, production)
            store.delete_stage(production, "final")
            raise typer.Exit(run_productions(settings, store, [prod]))
        if not clips:
            raise InputError("nothing to assemble", "name a production id, or pass --clips a.mp4 b.mp4 ...")
        if captions and len(captions) != len(clips):
            raise InputError(f"{len(captions)} captions for {len(clips)} clips", "give one --captions value per clip")
        for clip in clips:
            if not clip.exists():
                raise InputError(f"clip {clip} does not exist", "check the paths given to --clips")
        out = output or Path("out.mp4")
        width, height = frame_size(aspect.value, settings.resolution)
        cut = [CutClip(path=c, caption=(captions[i] if captions else "")) for i, c in enumerate(clips)]
        spec = spec_from_settings(settings, cut, width, height)
        result = render_with_edit(spec, out, settings, {"script": None, "seo": None, "production": None})
        write_sidecars(result, spec, out)
        err.print(f"wrote {out} ({result.duration:.2f}s, {result.path} path), {out.with_suffix('.srt')} and "
                  f"{out.with_suffix('.ass')}")
    except ReelcrewError as exc:
        fail(exc)
