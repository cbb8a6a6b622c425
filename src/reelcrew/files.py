"""Files that are never half-written: temp names tagged with our pid, atomic renames, checksums.

A file under its final name is complete. A crash leaves only a temp name, which the next writer of
the same file sweeps once the process that wrote it is gone.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Any

HOST = socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_owner() -> str:
    """A fresh claim owner, `host:pid:random`: one per claim, so a sibling thread's claim is never "mine"."""
    return f"{HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_alive(owner: str | None) -> bool:
    """Is the process behind a lease owner (`host:pid:random`, or an older `host:pid`) still running?

    Another host's owner is assumed alive: its lease expiry (`lease_until`) is what frees its work.
    """
    if not owner:
        return False
    parts = owner.rsplit(":", 2)
    host, pid = (parts[0], parts[1]) if len(parts) == 3 else (owner.rpartition(":")[0], owner.rpartition(":")[2])
    if host != HOST:
        return True
    try:
        return pid_alive(int(pid))
    except ValueError:
        return True


def ensure_writable(folder: Path) -> None:
    """Create `folder` and prove we can write in it (OSError if not), before anything is spent."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write-test.{temp_tag()}"  # unique per call: two threads probing at once must not collide
    probe.write_text("ok")
    probe.unlink()


TEMP_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", HOST)  # a temp name's host: no dots (they split names), no colons
# `pid-random@host` (no colon: ffmpeg reads `a:b` in a bare file name as a protocol), or an older bare pid
_TEMP_TAG = re.compile(r"\.(\d+-[0-9a-f]+@[A-Za-z0-9_-]+|\d+)\.part")


def temp_tag() -> str:
    """The owner written into a temp name (`pid-random@host`), so a later process can tell whether it is dead."""
    return f"{os.getpid()}-{secrets.token_hex(4)}@{TEMP_HOST}"


def tag_alive(tag: str) -> bool:
    """Is the process that owns a temp name still running? Another host's is assumed alive (never ours to sweep)."""
    if tag.isdigit():
        return pid_alive(int(tag))
    owner, _, host = tag.partition("@")
    if host != TEMP_HOST:
        return True
    try:
        return pid_alive(int(owner.partition("-")[0]))
    except ValueError:
        return True


def leftover_part(path: Path) -> bool:
    """A temp file (`.NAME.<owner>.part…`) whose owner process is dead: a crash's leftover, safe to delete."""
    match = _TEMP_TAG.search(path.name)
    return bool(path.name.startswith(".") and match and not tag_alive(match.group(1)))


def part_path(dest: Path, suffix: str = "") -> Path:
    """A temp name beside `dest` (`.NAME.pid-random@host.part`); leftovers of dead processes are swept first."""
    for old in dest.parent.glob(f".{glob.escape(dest.name)}.*.part{suffix}"):
        if leftover_part(old):
            old.unlink(missing_ok=True)
    return dest.with_name(f".{dest.name}.{temp_tag()}.part{suffix}")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temp name and rename: a full disk or a read-only folder is a StorageError naming it."""
    from reelcrew.storage import true_causes

    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    with true_causes(path, f"{path.name}", len(text.encode()) + 4096):
        tmp = part_path(path)
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
