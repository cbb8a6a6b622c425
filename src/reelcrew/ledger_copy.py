"""Consistent copies of a ledger while work runs, and putting one back: the one place that knows how each
database is copied (SQLite's online backup API; PostgreSQL's `pg_dump`/`pg_restore`). No SQL here: the queries
stay in `store.py`; this module moves whole databases.

SQLite: `Connection.backup` with all pages in one step reads one WAL snapshot, so writers in other processes go
on while it copies and the copy holds whole transactions only. PostgreSQL: `pg_dump` runs in one repeatable-read
snapshot; its custom format (`-Fc`, compressed) is restored with `pg_restore --clean --if-exists` in one
transaction. The password, when the URL has one, goes to the tools through PGPASSWORD, never on a command line.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from reelcrew.errors import ConfigError
from reelcrew.files import part_path
from reelcrew.store import safe_url, sqlite_path

SQLITE_PARTS = ("", "-wal", "-shm")  # a SQLite ledger is its file plus the WAL and its index


def _read_only(path: Path) -> str:
    """A read-only SQLite URI for a file (as_uri escapes the characters a URI would misread)."""
    return path.resolve().as_uri() + "?mode=ro"


def copy_sqlite(source: Path, dest: Path) -> None:
    """An online, consistent copy of a SQLite ledger (all pages in one step: one snapshot)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(dest)
    src = sqlite3.connect(_read_only(source), uri=True, timeout=30)
    try:
        out = sqlite3.connect(tmp)
        try:
            src.backup(out, pages=-1)
        finally:
            out.close()
    finally:
        src.close()
    os.replace(tmp, dest)


def copy_raw(source: Path, dest_dir: Path) -> list[Path]:
    """Byte copies of a ledger file and its WAL parts (a corrupt file cannot go through the backup API)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for suffix in SQLITE_PARTS:
        part = source.with_name(source.name + suffix)
        if part.exists():
            shutil.copy2(part, dest_dir / part.name)
            copied.append(dest_dir / part.name)
    return copied


def replace_sqlite(ledger: Path, copy: Path) -> None:
    """Put `copy` in place of the ledger file (its old WAL parts removed: they belong to the old file)."""
    tmp = part_path(ledger)
    copy_sqlite(copy, tmp)
    for suffix in SQLITE_PARTS[1:]:
        ledger.with_name(ledger.name + suffix).unlink(missing_ok=True)
    os.replace(tmp, ledger)


def integrity(path: Path) -> str:
    """SQLite's own verdict on a ledger file: "ok", or what `PRAGMA integrity_check` found."""
    try:
        conn = sqlite3.connect(_read_only(path), uri=True, timeout=30)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return "; ".join(str(r[0]) for r in rows)[:500]


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The libpq connection string for a SQLAlchemy URL, and the environment carrying its password."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return plain, env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} is not installed: a PostgreSQL ledger is backed up and restored with it",
                          "install the PostgreSQL client tools (Debian: apt-get install postgresql-client)")
    return found


def _run(args: list[str], env: dict[str, str], what: str, url: str) -> None:
    result = subprocess.run(args, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
        raise ConfigError(f"{what} of {safe_url(url)} failed: {detail}",
                          "check that the database server is up and REELCREW_DB names it")


def dump_postgres(url: str, dest: Path, snapshot: str | None = None) -> None:
    """`pg_dump -Fc`: one snapshot of the whole database (an exported one when given), compressed."""
    conninfo, env = _libpq(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(dest)
    _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={tmp}",
          *([f"--snapshot={snapshot}"] if snapshot else []), conninfo], env, "pg_dump", url)
    os.replace(tmp, dest)


def restore_postgres(url: str, dump: Path) -> None:
    """`pg_restore --clean --if-exists` in one transaction: the dump's tables replace ours, or nothing changes."""
    conninfo, env = _libpq(url)
    _run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
          f"--dbname={conninfo}", str(dump)], env, "pg_restore", url)


def is_sqlite(url: str) -> bool:
    return sqlite_path(url) is not None
