"""Files that are never half-written: temp names tagged with our pid, atomic renames, checksums.

A file under its final name is complete. A crash leaves only a temp name, which the next writer of
the same file sweeps once the process that wrote it is gone.
"""

from __future__ import annotations

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
    probe = folder / f".write-test.{os.getpid()}"
    probe.write_text("ok")
    probe.unlink()


def part_path(dest: Path, suffix: str = "") -> Path:
    """A temp name beside `dest`, tagged with our pid; leftovers of dead processes are swept first."""
    for old in dest.parent.glob(f".{dest.name}.*.part{suffix}"):
        match = re.search(r"\.(\d+)\.part", old.name)
        if match and not pid_alive(int(match.group(1))):
            old.unlink(missing_ok=True)
    return dest.with_name(f".{dest.name}.{os.getpid()}.part{suffix}")


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = part_path(path)
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
