"""Opening the ledger for a face: the output folder checked, logs set up, an older folder ledger imported once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from reelcrew.errors import ConfigError, InputError
from reelcrew.models import Production
from reelcrew.settings import Settings
from reelcrew.store import Store

log = logging.getLogger("reelcrew.service")
Notify = Callable[[str], None]


def open_store(settings: Settings, notify: Notify = log.info) -> Store:
    """The machine's ledger (or REELCREW_DB's), after importing an older ledger left in the output folder."""
    from reelcrew.files import ensure_writable
    from reelcrew.leftovers import sweep_leftovers
    from reelcrew.logs import log_to_file, register_secret
    from reelcrew.storage import as_storage_error
    from reelcrew.store import open_ledger

    out = settings.reelcrew_output_dir
    try:
        ensure_writable(out)
    except OSError as exc:
        raise (as_storage_error(exc, out, f"in the output folder {out}")
               or ConfigError(f"output folder {out} is not writable ({exc.strerror})",
                              "pass --output-dir to a folder you can write, or fix its permissions")) from None
    register_secret(settings.api_key())
    log_to_file(out / "reelcrew.log", settings.veo3_debug_mode)
    store = open_ledger(settings)
    import_folder_ledger(store, out, notify)
    sweep_leftovers(out)  # temp files and render folders of killed runs
    return store


def open_reader(settings: Settings, notify: Notify = log.info) -> Store:
    """The ledger for `status` and `cost`, which never write: opened as usual where it can be, else read-only
    (SQLite `mode=ro`, or `immutable=1` in a folder nobody can write), so a read-only or full output folder or
    ledger folder can still be inspected."""
    from reelcrew.storage import StorageError
    from reelcrew.store import sqlite_path

    try:
        return open_store(settings, notify)
    except StorageError:
        path = sqlite_path(settings.db_url)
        if path is None or not path.exists():
            raise
        return Store(settings.db_url, journal=settings.journal_path, read_only=True)


def require_output_folder(settings: Settings, store: Store | None = None) -> None:
    """`resume -o DIR` works on the productions of DIR: a mistyped DIR is an error (exit 2), never a new folder.

    Called without a store before anything is opened (DIR must exist), and with one to check the ledger has
    productions in DIR."""
    from reelcrew.store import safe_url

    out = settings.reelcrew_output_dir.resolve()
    ledger = safe_url(store.url if store is not None else settings.db_url)
    fix = "check the -o/--output-dir path; `reelcrew status` lists every production with its folder"
    if not out.is_dir():
        raise InputError(f"nothing to resume in {out}: that folder does not exist (looked there for an older "
                         f"reelcrew.db and in the ledger {ledger} for its productions)", fix)
    if store is not None and not productions_in(settings, store) and not (out / "reelcrew.db.imported").exists():
        raise InputError(f"nothing to resume in {out}: the ledger {ledger} has no production there and the folder "
                         "has no older reelcrew.db", fix)


def productions_in(settings: Settings, store: Store) -> list[Production]:
    """The ledger's productions whose files go to the output folder (a production not yet claimed counts)."""
    out = settings.reelcrew_output_dir.resolve()
    return [p for p in store.all_productions()
            if not p.folder or Path(p.folder).resolve().is_relative_to(out)]


def import_folder_ledger(store: Store, out: Path, notify: Notify = log.info) -> None:
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
    notify(f"imported the older ledger {old} into {safe_url(store.url)} ({moved or 'nothing new'}); "
           f"kept as {old.name}.imported")


def import_ledger(store: Store, source: str) -> dict[str, int]:
    """`reelcrew ledger import`: copy an older ledger (a reelcrew.db file or a URL) into the one in use."""
    if "://" not in source and not Path(source).exists():
        raise InputError(f"no ledger at {source}", "give the path of a reelcrew.db file or a database URL")
    folder = Path(source).resolve().parent if "://" not in source else None
    return store.import_ledger(source, folder=folder)


def require_production(store: Store, production_id: str) -> Production:
    """The production, or an InputError that says where to find the ids."""
    prod = store.production(production_id)
    if prod is None:
        raise InputError(f"no production {production_id!r} in this ledger", "run `reelcrew status` to list the ids")
    return prod


def production_folder(settings: Settings, prod: Production) -> Path:
    return Path(prod.folder) if prod.folder else settings.reelcrew_output_dir / prod.id
