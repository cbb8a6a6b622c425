"""Backup commands: backup, restore and prune (the service's `backup` module does the work)."""

from __future__ import annotations

from pathlib import Path

import typer

from reelcrew.cli.app import ConfigOpt, JsonOpt, OutputDirOpt, app, err, reports_errors, settings_for
from reelcrew.cli.render import print_json
from reelcrew.results import RecoveryReport


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def print_recovery(report: RecoveryReport, as_json: bool = False) -> None:
    """What a restore or `repair --ledger` put back, and what needs the user."""
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    if report.safety_copy:
        err.print(f"the ledger as it was is kept in {report.safety_copy}")
    for line in report.fixed:
        err.print(f"[green]recovered[/] {line}")
    for line in report.needs_you:
        err.print(f"[yellow]needs you[/] {line}")
    if report.media_restored:
        err.print(f"{report.media_restored} missing media file(s) put back from the backup")
    counts = ", ".join(f"{n} {what}" for what, n in report.counts.items())
    err.print(f"ledger now: {counts}; {report.reattached} clip(s) with a receipt will be re-attached, not paid again")
    err.print("run `reelcrew resume` to finish what was in flight (nothing with a receipt is submitted again)")


@app.command()
@reports_errors
def backup(
    to: Path | None = typer.Option(None, "--to", help="Folder for the backup (default: backups/ beside the ledger)."),
    with_media: bool = typer.Option(False, "--with-media", help="Add every production's clips, finals and files."),
    output_dir: OutputDirOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Copy the ledger (consistently, while work runs), the receipts journal and optionally the media."""
    from reelcrew.service.backup import backup as make_backup

    result = make_backup(settings_for(output_dir, config), to=to, with_media=with_media)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    counts = ", ".join(f"{n} {what}" for what, n in result.counts.items())
    err.print(f"backup {result.path} ({_size(result.bytes)}, {result.seconds:.2f} s, {result.database} schema "
              f"{result.schema_version}: {counts}" + (f", {result.media_files} media files" if with_media else "")
              + ")")
    err.print(f"checksum {result.checksum}")
    for old in result.rotated:
        err.print(f"removed the older backup {old} (REELCREW_BACKUP_KEEP)")


@app.command()
@reports_errors
def restore(
    file: Path = typer.Argument(..., help="A reelcrew-backup-*.tar file."),
    output_dir: OutputDirOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Replace the ledger with a backup (a safety copy is kept), then re-attach every operation with a receipt
    in the journal or a manifest.json: nothing paid for is submitted again. Refused while work runs."""
    from reelcrew.service.backup import restore as restore_backup

    report = restore_backup(settings_for(output_dir, config), file)
    print_recovery(report, as_json)


@app.command()
@reports_errors
def prune(
    older_than: str = typer.Option(..., "--older-than", help="Age, e.g. 30d, 12h, 2w."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be removed; remove nothing."),
    output_dir: OutputDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Remove old backups and the clip files of finished productions (never a clip an unfinished production uses,
    never a final, always keeping the newest backup); says how much space it freed."""
    from reelcrew.cli.app import open_store
    from reelcrew.service.backup import parse_age
    from reelcrew.service.backup import prune as prune_files

    age = parse_age(older_than)
    settings = settings_for(output_dir, config)
    report = prune_files(settings, open_store(settings), age, dry_run)
    verb = "would remove" if dry_run else "removed"
    for path in report.removed:
        err.print(f"{verb} {path}")
    for line in report.kept:
        err.print(f"kept {line}")
    err.print(f"{verb} {len(report.removed)} file(s): {_size(report.freed_bytes)} "
              f"{'would be ' if dry_run else ''}freed")
