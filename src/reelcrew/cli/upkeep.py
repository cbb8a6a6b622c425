"""Upkeep commands: status, repair, cost, doctor, and `ledger import`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from reelcrew import service
from reelcrew.cli.app import (
    ConfigOpt,
    JsonOpt,
    MockOpt,
    OutputDirOpt,
    app,
    err,
    ledger_app,
    open_reader,
    open_store,
    reports_errors,
    settings_for,
)
from reelcrew.cli.render import print_cost, print_json, print_repair, print_status
from reelcrew.errors import ReelcrewError


@app.command()
@reports_errors
def status(
    production: str | None = typer.Argument(None),
    output_dir: OutputDirOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """What the ledger knows: productions, their stages and clips."""
    settings = settings_for(output_dir, config)
    report = service.status(settings, production, open_reader(settings))
    print_status(report, as_json, production)


@app.command()
@reports_errors
def repair(
    output_dir: OutputDirOpt = None,
    mock: MockOpt = False,
    ledger: bool = typer.Option(False, "--ledger", help="Rebuild a ledger that fails SQLite's integrity check "
                                "(from the newest backup, the receipts journal, manifests and files)."),
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find clips marked done whose file is missing or invalid, and clips stuck past their timeout; fix or report."""
    settings = settings_for(output_dir, config, mock)
    if ledger:
        from reelcrew.cli.backup import print_recovery
        from reelcrew.service.backup import repair_ledger

        print_recovery(repair_ledger(settings))
        return
    report = service.repair(settings, open_store(settings))
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    print_repair(report)


@ledger_app.command("import")
@reports_errors
def ledger_import(
    source: str = typer.Argument(..., help="An older ledger: a reelcrew.db file, or a database URL."),
    output_dir: OutputDirOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy an older ledger (productions, clips, receipts, costs, events, tokens, ...: every table but the quota
    breakers') into the one in use.

    Nothing here is overwritten; a clip that lacks a receipt or a file the older ledger has takes it.
    Works from SQLite into PostgreSQL (set REELCREW_DB to the target)."""
    from reelcrew.store import safe_url

    settings = settings_for(output_dir, config)
    store = open_store(settings)
    counts = service.import_ledger(store, source)
    if as_json:
        print_json({"ledger": safe_url(store.url), "imported": counts})
        return
    moved = ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "nothing"
    err.print(f"imported into {safe_url(store.url)}: {moved}")
    err.print("run `reelcrew resume` to finish what it had in flight (receipts are re-attached, never re-paid)")


@app.command()
@reports_errors
def cost(
    output_dir: OutputDirOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """The cost ledger: per production, per day, per model."""
    settings = settings_for(output_dir, config)
    report = service.cost(settings, open_reader(settings))
    print_cost(report, as_json)


@app.command()
@reports_errors
def doctor(
    output_dir: OutputDirOpt = None,
    mock: MockOpt = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Checks before spending: keys, Veo and Gemini reachable, ffmpeg, a subtitle font, output folder, disk space."""
    settings = settings_for(output_dir, config, mock)
    from reelcrew.health import checks as shared_checks  # the same checks as /readyz

    checks = [*_credential_checks(settings), *shared_checks(settings), *_backup_checks(settings),
              _artifact_check(settings)]
    if as_json:
        failed = [f"{name}: {detail}" for name, ok, detail in checks if not ok]
        print_json({"checks": [{"check": name, "ok": ok, "detail": detail} for name, ok, detail in checks],
                    **({"error": "; ".join(failed), "fix": "fix the checks marked not ok", "exit_code": 2}
                       if failed else {})})
        raise typer.Exit(2 if failed else 0)
    table = Table(title="reelcrew doctor")
    for col in ("check", "ok", "detail"):
        table.add_column(col, overflow="fold")
    for name, ok, detail in checks:
        table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]", detail)
    Console().print(table)
    raise typer.Exit(0 if all(ok for _, ok, _ in checks) else 2)


Check = tuple[str, bool, str]


def _artifact_check(settings) -> Check:
    """Where clips and finals go for every worker, and whether this machine can write there (a probe object)."""
    from reelcrew import artifacts

    if not settings.reelcrew_artifacts:
        return ("artifact store", True, f"the output folder {settings.reelcrew_output_dir} (REELCREW_ARTIFACTS unset)")
    try:
        artifacts.check(settings)
    except artifacts.ArtifactError as exc:
        return ("artifact store", False, f"{exc.problem}; fix: {exc.fix}")
    return ("artifact store", True, f"{artifacts.store_for(settings).where}: reachable and writable; "
                                    f"fetched copies in {settings.cache_dir}")


def _credential_checks(settings) -> list[Check]:
    if settings.veo3_mock_mode and settings.mock_llm:
        return [("credentials", True, "mock mode: none needed")]
    from reelcrew.google_auth import credentials_summary

    try:
        detail = credentials_summary(settings)
        ok = detail != "none"
        if not ok:
            detail = "set GEMINI_API_KEY or Vertex settings, or use --mock"
    except ReelcrewError as exc:
        ok, detail = False, f"{exc.problem}; {exc.fix}"
    return [("credentials", ok, detail)] + ([_reachable(settings)] if ok else [])


def _reachable(settings) -> Check:
    try:
        from google.genai import types

        from reelcrew.google_auth import genai_client

        client = genai_client(settings, types.HttpOptions(timeout=10_000))
        client.models.get(model=settings.gemini_model_id)
        return ("Gemini reachable", True, settings.gemini_model_id)
    except Exception as exc:
        return ("Gemini reachable", False, f"{type(exc).__name__}: {str(exc)[:160]}")


def _backup_checks(settings) -> list[Check]:
    """When the last backup was made (informational), and whether the receipts journal and the ledger agree."""
    import time

    from reelcrew.service.backup import last_backup

    newest = last_backup(settings)
    if newest is None:
        backup = ("last backup", True, f"none yet in {settings.backup_dir}: run `reelcrew backup` (README, Backups)")
    else:
        age = (time.time() - newest.stat().st_mtime) / 3600
        backup = ("last backup", True, f"{newest} ({age:.1f} h ago)")
    try:
        from reelcrew.store import open_ledger

        gaps = open_ledger(settings).journal_gaps()
    except ReelcrewError as exc:
        return [backup, ("journal and ledger", False, f"{exc.problem}; `reelcrew repair --ledger`")]
    agree = ("journal and ledger", gaps == 0,
             "agree: every journalled receipt is in the ledger" if gaps == 0 else
             f"{gaps} journalled receipt(s) missing from the ledger; run `reelcrew repair` to put them back")
    return [backup, agree]
