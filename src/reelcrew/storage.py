"""True causes for storage failures: a full disk, a read-only folder or a permission problem is named as such.

Every layer that writes (the ledger, downloads, the render, temp files, atomic JSON) turns an OSError, a SQLite
message or an ffmpeg complaint that means "no room" / "read-only" / "not allowed" into one `StorageError` that
names the folder, the cause and (for a full disk) the free space and what is needed. A storage failure is never
reported as a corrupt file, and its fix never asks to move, delete or discard anything reelcrew wrote: the
receipts and finished files are what make the next run free.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reelcrew.errors import ReelcrewError

FULL, READ_ONLY, DENIED = "full", "read-only", "denied"
_ERRNO_CAUSES = {errno.ENOSPC: FULL, errno.EDQUOT: FULL, errno.EFBIG: FULL, errno.EROFS: READ_ONLY,
                 errno.EACCES: DENIED, errno.EPERM: DENIED}
# what SQLite and ffmpeg print for the same causes (lower case); None: ask the folder itself
_MESSAGE_CAUSES: dict[str, str | None] = {
    "database or disk is full": FULL, "no space left on device": FULL, "disk quota exceeded": FULL,
    "file too large": FULL, "read-only file system": READ_ONLY, "permission denied": DENIED,
    "attempt to write a readonly database": None, "unable to open database file": None, "disk i/o error": None,
}
LOW_SPACE = 1 << 20  # below 1 MiB free, a write that failed without saying why failed for lack of room


class StorageError(ReelcrewError):
    """The disk is full, the folder is read-only, or we may not write there: fix the storage, then run again."""

    exit_code = 2

    def __init__(self, problem: str, fix: str, cause: str, folder: Path):
        super().__init__(problem, fix)
        self.cause = cause
        self.folder = folder


def existing_folder(path: Path) -> Path:
    """The nearest folder at or above `path` that exists (what a disk-usage or permission probe can look at)."""
    path = Path(path).absolute()
    candidate = path if path.is_dir() else path.parent
    while not candidate.exists() and candidate != candidate.parent:
        candidate = candidate.parent
    return candidate


def free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(existing_folder(path)).free
    except OSError:
        return None


def human(size: float | None) -> str:
    if size is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def folder_cause(path: Path) -> str | None:
    """What the folder itself says: on a read-only file system, not writable by us, or (almost) full."""
    folder = existing_folder(path)
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return READ_ONLY
    except OSError:
        return None
    target = Path(path)
    if not os.access(folder, os.W_OK) or (target.is_file() and not os.access(target, os.W_OK)):
        return DENIED
    free = free_bytes(folder)
    if free is not None and free < LOW_SPACE:
        return FULL
    return None


def cause_of(exc: BaseException, path: Path | None = None) -> str | None:
    """`full`, `read-only`, `denied` or None (not a storage problem), from an errno, a SQLite or ffmpeg message."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # SQLAlchemy wraps sqlite3's error in .orig
        seen.add(id(current))
        code = getattr(current, "errno", None)
        if isinstance(current, OSError) and code in _ERRNO_CAUSES:
            return _ERRNO_CAUSES[code]
        current = getattr(current, "orig", None) or current.__cause__
    return message_cause(str(exc), path)


def message_cause(text: str, path: Path | None = None) -> str | None:
    lowered = text.lower()
    for needle, cause in _MESSAGE_CAUSES.items():
        if needle in lowered:
            if cause is None and path is not None:
                return folder_cause(path)
            if cause is not None:
                return cause
    return None


def storage_error(cause: str, path: Path, what: str, needed: int | None = None,
                  elsewhere: str = "--output-dir") -> StorageError:
    """The message for a storage cause: names the folder, the cause, the free space and what to do (never
    to discard anything: receipts, stage files and finished clips are what make the next run free)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    again = ("then run the same command again (or `reelcrew resume`): receipts, stage files and finished clips "
             "are kept and nothing is paid twice")
    if cause == FULL:
        free = free_bytes(folder)
        need = f", about {human(needed)} needed" if needed else ""
        more = f"at least {human(max(needed - (free or 0), 0) or needed)}" if needed else "some space"
        return StorageError(f"the disk holding {folder} is full: cannot write {what} ({human(free)} free{need})",
                            f"free {more} on that disk, or point {elsewhere} at another disk; {again}", cause, folder)
    if cause == READ_ONLY:
        return StorageError(f"{folder} is on a read-only file system: cannot write {what}",
                            f"remount it read-write, or point {elsewhere} at a writable folder; {again}. "
                            "`reelcrew status` and `reelcrew cost` work on a read-only folder", cause, folder)
    return StorageError(f"permission denied: cannot write {what} in {folder}",
                        f"give your user write access to {folder} (chown or chmod), or point {elsewhere} at a folder "
                        f"you own; {again}", cause, folder)


def as_storage_error(exc: BaseException, path: Path, what: str, needed: int | None = None,
                     elsewhere: str = "--output-dir") -> StorageError | None:
    """The StorageError for `exc` if a storage problem caused it, else None (then it is some other failure)."""
    if isinstance(exc, StorageError):
        return exc
    cause = cause_of(exc, path)
    return storage_error(cause, path, what, needed, elsewhere) if cause else None


@contextmanager
def true_causes(path: Path, what: str, needed: int | None = None, elsewhere: str = "--output-dir") -> Iterator[None]:
    """Turn an OSError raised inside into a StorageError when the disk, the mount or permissions caused it."""
    try:
        yield
    except OSError as exc:
        mapped = as_storage_error(exc, path, what, needed, elsewhere)
        if mapped is None:
            raise
        raise mapped from exc
