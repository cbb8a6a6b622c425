"""Backups that cannot cost money: `backup`, `restore`, `repair --ledger`, `prune`, and the last backup's age.

A backup is one tar file, `reelcrew-backup-<UTC time>.tar`, with a `.sha256` beside it (`sha256sum -c` reads
it). Inside: `manifest.json` (time, database, schema version, row counts, each member's sha256 and the
productions' folders), the ledger (`ledger.sqlite.gz`, or `ledger.pgdump` in pg_dump's custom format), the
receipts journal, and with `--with-media` every production folder's files (`media/<id>/...`: the clips and
finals are paid assets, and the Gemini API deletes its copies after 2 days).

Restoring an older copy must never make anyone pay twice: after the ledger is replaced, the receipts journal
and every production's `manifest.json` are replayed (`service/reconcile.py`), so each operation with a receipt
anywhere is re-attached by the next run, never resubmitted.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from reelcrew import artifacts, ledger_copy
from reelcrew.errors import ConfigError, InputError, ReelcrewError
from reelcrew.files import part_path, sha256_file
from reelcrew.models import TERMINAL_STATUSES, ProductionStatus
from reelcrew.results import BackupResult, PruneReport, RecoveryReport
from reelcrew.service.reconcile import reconcile
from reelcrew.service.upkeep import PRUNED
from reelcrew.settings import Settings
from reelcrew.store import SCHEMA_VERSION, Store, open_ledger, safe_url, sqlite_path

BACKUP_PREFIX = "reelcrew-backup-"
SAFETY_PREFIX = "reelcrew-safety-"  # the ledger as it was just before a restore (never rotated away)
FORMAT = 1
AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """`30d`, `12h`, `90m`, `2w` or `45s` in seconds."""
    match = AGE.match(text or "")
    if not match:
        raise InputError(f"--older-than {text!r} is not an age", "write a number and a unit: 30d, 12h, 90m or 2w")
    return float(match.group(1)) * UNITS[match.group(2)]


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y%m%dT%H%M%SZ")


def _writable(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write backups to {folder} ({exc.strerror})",
                          "pass --to FOLDER, or set REELCREW_BACKUP_DIR to a writable folder") from None
    return folder.resolve()


def _archive_name(folder: Path, prefix: str, moment: float) -> Path:
    path = folder / f"{prefix}{_stamp(moment)}.tar"
    n = 2
    while path.exists():
        path = folder / f"{prefix}{_stamp(moment)}-{n}.tar"
        n += 1
    return path


def production_folders(settings: Settings, store: Store) -> dict[str, str]:
    return {r["id"]: r["folder"] or str(settings.reelcrew_output_dir.resolve() / r["id"])
            for r in store.production_rows()}


def _media(folders: dict[str, str]) -> list[tuple[str, Path]]:
    """Every finished file of every production folder (temp names, starting with a dot, are skipped)."""
    out = []
    for pid, folder in sorted(folders.items()):
        root = Path(folder)
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                out.append((f"media/{pid}/{rel.as_posix()}", path))
    return out


def _copy_ledger(store: Store, work: Path) -> tuple[Path, int, dict[str, int]]:
    """The ledger, consistently, into `work`: its file there, its schema version and its row counts."""
    path = sqlite_path(store.url)
    if path is None:
        with store.snapshot() as (name, counts):
            dump = work / "ledger.pgdump"
            ledger_copy.dump_postgres(store.url, dump, name)
        return dump, store.schema_version(), counts
    if not path.exists():
        raise ConfigError(f"no ledger at {path} to back up", "run reelcrew once first, or check REELCREW_DB")
    raw = work / "ledger.sqlite"
    ledger_copy.copy_sqlite(path, raw)
    copy = Store(f"sqlite:///{raw}", journal=work / "unused.jsonl")  # counts read from the copy itself
    try:
        counts, version = copy.counts(), copy.schema_version()
    finally:
        copy.close()
    packed = work / "ledger.sqlite.gz"
    with open(raw, "rb") as src, gzip.open(packed, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return packed, version, counts


def backup(settings: Settings, store: Store | None = None, to: Path | None = None, with_media: bool = False,
           prefix: str = BACKUP_PREFIX, rotate: bool = True) -> BackupResult:
    """A consistent online copy of the ledger (work may go on meanwhile), the receipts journal, optionally the
    media, as one tar with a checksum; then older backups beyond REELCREW_BACKUP_KEEP are removed."""
    store = store or open_ledger(settings)
    folder = _writable(to or settings.backup_dir)
    started, moment = time.monotonic(), time.time()
    dest = _archive_name(folder, prefix, moment)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".backup-") as tmp:
        work = Path(tmp)
        ledger_file, version, counts = _copy_ledger(store, work)
        members = [(ledger_file.name, ledger_file)]
        if store.journal is not None and store.journal.exists():
            journal = work / "receipts.jsonl"
            shutil.copyfile(store.journal, journal)
            members.append((journal.name, journal))
        folders = production_folders(settings, store)
        media = _media(folders) if with_media else []
        manifest = {"format": FORMAT, "created_at": datetime.fromtimestamp(moment, UTC).isoformat(),
                    "created_ts": moment, "database": store.dialect, "ledger": safe_url(store.url),
                    "schema_version": version, "counts": counts, "with_media": with_media, "folders": folders,
                    "members": {name: {"sha256": sha256_file(path), "bytes": path.stat().st_size}
                                for name, path in [*members, *media]}}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        partial = part_path(dest)
        try:
            with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
                tar.add(work / "manifest.json", "manifest.json")
                for name, path in [*members, *media]:
                    tar.add(path, name)
            os.replace(partial, dest)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ConfigError(f"could not write the backup {dest} ({exc.strerror})",
                              f"free space in {folder} or pass --to another folder") from None
    checksum = dest.with_name(dest.name + ".sha256")
    checksum.write_text(f"{sha256_file(dest)}  {dest.name}\n", encoding="utf-8")
    rotated = _rotate(folder, settings.reelcrew_backup_keep) if rotate else []
    return BackupResult(path=dest, checksum=checksum, bytes=dest.stat().st_size,
                        seconds=round(time.monotonic() - started, 3), database=store.dialect, schema_version=version,
                        counts=counts, media_files=len(media), rotated=rotated)


def list_backups(folder: Path, prefix: str = BACKUP_PREFIX) -> list[Path]:
    """Backups in a folder, oldest first (by time written: two made in one second differ only by a suffix)."""
    found = folder.glob(f"{prefix}*.tar") if folder.is_dir() else []
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def _rotate(folder: Path, keep: int) -> list[Path]:
    old = list_backups(folder)[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)
    return old


def last_backup(settings: Settings) -> Path | None:
    found = list_backups(settings.backup_dir)
    return found[-1] if found else None


# -- reading a backup ------------------------------------------------------------------------------------
def open_backup(path: Path, work: Path) -> dict:
    """Check a backup (its .sha256, then every member's sha256) and unpack it into `work`; its manifest."""
    if not path.is_file():
        raise InputError(f"no backup at {path}",
                         "give the path of a reelcrew-backup-*.tar file (`reelcrew doctor` names the last one)")
    checksum = path.with_name(path.name + ".sha256")
    if checksum.exists():
        expected = checksum.read_text(encoding="utf-8").split()[0]
        if sha256_file(path) != expected:
            raise InputError(f"backup {path} does not match its checksum {checksum.name}: it is damaged",
                             "restore another backup (they are listed in the backups folder)")
    try:
        with tarfile.open(path, "r") as tar:
            manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
            for info in tar.getmembers():
                target = (work / info.name).resolve()
                if not info.isfile() or not target.is_relative_to(work.resolve()):
                    continue  # only plain files, only inside `work`
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(info) as src, open(target, "wb") as dst:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, dst, 1 << 20)
    except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
        raise InputError(f"{path} is not a readable reelcrew backup ({exc})",
                         "give the path of a reelcrew-backup-*.tar file") from None
    for name, facts in manifest.get("members", {}).items():
        member = work / name
        if not member.exists() or sha256_file(member) != facts["sha256"]:
            raise InputError(f"backup {path}: {name} is missing or damaged", "restore another backup")
    if int(manifest.get("schema_version", 0)) > SCHEMA_VERSION:
        raise InputError(f"backup {path} was made by a newer reelcrew (ledger schema "
                         f"{manifest['schema_version']}, this one knows {SCHEMA_VERSION})",
                         "upgrade reelcrew, then restore it")
    return manifest


def _refuse_if_running(store: Store) -> None:
    active = store.active_work()
    if active:
        shown = "; ".join(active[:5]) + (f" and {len(active) - 5} more" if len(active) > 5 else "")
        raise InputError(f"restore refused: work is running on this ledger ({shown})",
                         "let it finish, or stop it (Ctrl-C, or `kill PID`: receipts are kept), then run "
                         "`reelcrew restore` again")


def _safety_copy(settings: Settings, store: Store | None) -> Path:
    """The current ledger kept before it is replaced: a normal backup, or byte copies when it is unreadable."""
    if store is not None:
        return backup(settings, store, prefix=SAFETY_PREFIX, rotate=False).path
    path = sqlite_path(settings.db_url)
    assert path is not None  # an unreadable ledger here is a SQLite file (a server that cannot be reached raises)
    dest = _writable(settings.backup_dir) / f"reelcrew-corrupt-{_stamp(time.time())}"
    ledger_copy.copy_raw(path, dest)
    return dest


def _open_current(settings: Settings) -> Store | None:
    """The ledger in use, or None when it is unreadable (a corrupt SQLite file: it is copied aside as bytes)."""
    try:
        return open_ledger(settings)
    except ReelcrewError:
        if sqlite_path(settings.db_url) is None:
            raise
        return None


def _put_back(settings: Settings, manifest: dict, work: Path) -> None:
    """Replace the ledger in use with the backup's."""
    path = sqlite_path(settings.db_url)
    if (path is None) != (manifest["database"] == "postgresql"):
        raise InputError(f"this backup is of a {manifest['database']} ledger and the ledger in use is not",
                         "restore it where it was made, or use `reelcrew ledger import` to copy a SQLite "
                         "ledger into PostgreSQL")
    if path is None:
        ledger_copy.restore_postgres(settings.db_url, work / "ledger.pgdump")
        return
    raw = work / "ledger.sqlite"
    with gzip.open(work / "ledger.sqlite.gz", "rb") as src, open(raw, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    path.parent.mkdir(parents=True, exist_ok=True)
    ledger_copy.replace_sqlite(path, raw)


def _restore_media(manifest: dict, work: Path) -> int:
    """Files of the backup that are missing from their production folders are put back (never overwritten)."""
    count = 0
    for name in manifest.get("members", {}):
        if not name.startswith("media/"):
            continue
        _, pid, rel = name.split("/", 2)
        folder = manifest.get("folders", {}).get(pid)
        if not folder or ".." in Path(rel).parts:
            continue
        dest = Path(folder) / rel
        if dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = part_path(dest)
        shutil.copyfile(work / name, tmp)
        os.replace(tmp, dest)
        count += 1
    return count


def restore(settings: Settings, file: Path) -> RecoveryReport:
    """Refuse while work runs; keep a safety copy; put the backup's ledger in place (and its media where files
    are missing); then replay the receipts journal and every manifest so nothing paid for is paid again."""
    current = _open_current(settings)
    before: list[str | None] = []
    if current is not None:
        _refuse_if_running(current)
        before = [r["folder"] for r in current.production_rows()]
    work_root = _writable(settings.backup_dir)
    with tempfile.TemporaryDirectory(dir=work_root, prefix=".restore-") as tmp:
        work = Path(tmp)
        manifest = open_backup(Path(file), work)
        report = RecoveryReport(backup=Path(file).resolve(), safety_copy=_safety_copy(settings, current))
        if current is not None:
            _refuse_if_running(current)  # again: a run may have started while the backup was checked and copied
            current.close()
        _put_back(settings, manifest, work)
        store = open_ledger(settings)
        report.media_restored = _restore_media(manifest, work)
        journals = [work / "receipts.jsonl"] if (work / "receipts.jsonl").exists() else []
        report.fixed.insert(0, f"ledger replaced by {Path(file).name} ({manifest['created_at']}, "
                               f"{manifest['counts'].get('receipts', 0)} receipts)")
        reconcile(settings, store, journals, [*before, *manifest.get("folders", {}).values()], report)
        store.close()  # the restored file complete in itself (WAL checkpointed) when this returns
    return report


def repair_ledger(settings: Settings) -> RecoveryReport:
    """`reelcrew repair --ledger`: a ledger SQLite's integrity check condemns is kept aside as bytes and rebuilt:
    from the newest backup when there is one, else empty; then the rows still readable in the damaged copy are
    imported and the receipts journal, manifests, stage files and clip files replayed. Never submits anything."""
    path = sqlite_path(settings.db_url)
    verdict = ledger_copy.integrity(path) if path is not None and path.exists() else "ok"
    if verdict == "ok":
        store = open_ledger(settings)
        report = RecoveryReport()
        report.fixed.append(f"ledger {safe_url(store.url).removeprefix('sqlite:///')}: integrity check ok, "
                            "nothing replaced; receipts reconciled")
        return reconcile(settings, store, report=report)
    assert path is not None
    report = RecoveryReport(safety_copy=_safety_copy(settings, None))
    report.fixed.append(f"ledger {path} failed SQLite's integrity check ({verdict[:160]}); its bytes are kept "
                        f"in {report.safety_copy}")
    newest = last_backup(settings)
    with tempfile.TemporaryDirectory(dir=_writable(settings.backup_dir), prefix=".repair-") as tmp:
        work = Path(tmp)
        manifest = None
        if newest is not None:
            try:
                manifest = open_backup(newest, work)
            except ReelcrewError as exc:
                report.needs_you.append(f"the newest backup {newest} could not be used: {exc.problem}")
        if manifest is not None and newest is not None:
            _put_back(settings, manifest, work)
            report.backup = newest
            report.fixed.append(f"ledger rebuilt from the newest backup {newest.name} ({manifest['created_at']})")
        else:
            for suffix in ledger_copy.SQLITE_PARTS:
                path.with_name(path.name + suffix).unlink(missing_ok=True)
            report.fixed.append("no usable backup: ledger rebuilt from an empty one")
        store = open_ledger(settings)
        _salvage(store, report.safety_copy, path.name, report)
        journals = [work / "receipts.jsonl"] if (work / "receipts.jsonl").exists() else []
        folders = list((manifest or {}).get("folders", {}).values())
        reconcile(settings, store, journals, folders, report)
        store.close()
        return report


def _salvage(store: Store, copies: Path | None, name: str, report: RecoveryReport) -> None:
    """Rows SQLite can still read from the damaged copy come across (nothing here is overwritten)."""
    if copies is None or not (copies / name).exists():
        return
    scratch = copies / f"salvage-{name}"
    for suffix in ledger_copy.SQLITE_PARTS:
        if (copies / (name + suffix)).exists():
            shutil.copyfile(copies / (name + suffix), scratch.with_name(scratch.name + suffix))
    try:
        counts = store.import_ledger(str(scratch))
        moved = ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "nothing new"
        report.fixed.append(f"rows still readable in the damaged ledger imported: {moved}")
    except Exception as exc:  # a damaged file fails in many ways; what it cannot give, the journal and manifests do
        report.needs_you.append(f"no rows could be read from the damaged ledger ({type(exc).__name__}); rebuilt "
                                "from the journal, manifests and files only")
    finally:
        for suffix in ledger_copy.SQLITE_PARTS:
            scratch.with_name(scratch.name + suffix).unlink(missing_ok=True)


# -- retention ------------------------------------------------------------------------------------------
def prune(settings: Settings, store: Store, older_than: float, dry_run: bool = False) -> PruneReport:
    """Remove what is older than `older_than` seconds and no longer needed: backups and safety copies (the newest
    backup is always kept) and the clip files of finished productions. A clip file is kept while any unfinished
    production uses its clip, and finals are never removed (they are the product)."""
    report = PruneReport(dry_run=dry_run)
    cutoff = time.time() - older_than

    def remove(path: Path) -> None:
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
        report.removed.append(path)
        report.freed_bytes += size
        if not dry_run:
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    folder = settings.backup_dir
    newest = list_backups(folder)[-1:]
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if not path.name.startswith("reelcrew-") or path.name.endswith(".sha256"):
                continue
            if path.stat().st_mtime >= cutoff:
                continue
            if path in newest:
                report.kept.append(f"{path}: the newest backup is always kept")
                continue
            remove(path)
            checksum = path.with_name(path.name + ".sha256")
            if checksum.exists():
                remove(checksum)
    rows = {r["id"]: r for r in store.production_rows()}
    finished = {pid for pid, r in rows.items() if ProductionStatus(r["status"]) in TERMINAL_STATUSES}
    links = store.clip_links()
    needed = {link["clip_key"] for link in links if link["production_id"] not in finished}
    for link in links:
        row = rows.get(link["production_id"])
        if row is None or link["production_id"] not in finished or (row["updated_at"] or 0) >= cutoff:
            continue
        prod_folder = Path(row["folder"] or settings.reelcrew_output_dir / row["id"])
        path = prod_folder / "clips" / f"clip-{link['idx']:02d}.mp4"
        if not path.exists():
            continue
        if link["clip_key"] in needed:
            report.kept.append(f"{path}: its clip is used by an unfinished production")
            continue
        remove(path)
        for sample in sorted(path.parent.glob(f"{path.stem}.sample-*{path.suffix}")):  # VEO3_SAMPLE_COUNT's others
            remove(sample)
        if not dry_run and link["path"] and Path(link["path"]).resolve() == path.resolve():
            store.mark_pruned(link["clip_key"], f"{PRUNED} on {datetime.now(UTC).date().isoformat()}")
    cache = artifacts.clean_cache(settings, dry_run, max_age=older_than)  # copies fetched from the artifact store
    report.removed += cache.removed
    report.freed_bytes += cache.freed_bytes
    return report
