"""Each font's character map, kept on disk between processes.

Reading the cmaps of every installed font (to know what no font can draw) costs most of a second at each
`run`, `assemble` or `retry`; the answer only changes when a font file does. So a font's cmap is stored under
its path, face index, size and modification time in the user's cache folder, and read again only when the file
changed. The cache is a convenience: a missing, unreadable or corrupt file is rebuilt, never an error.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("reelcrew.assemble")
VERSION = 1


def _key(path: str, index: int) -> str | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return f"{path}|{index}|{stat.st_size}|{stat.st_mtime_ns}"


def to_ranges(codepoints: frozenset[int]) -> list[list[int]]:
    """Code points as [first, last] runs: a CJK font's 30,000 code points become a few hundred pairs."""
    runs: list[list[int]] = []
    for point in sorted(codepoints):
        if runs and runs[-1][1] == point - 1:
            runs[-1][1] = point
        else:
            runs.append([point, point])
    return runs


def from_ranges(runs: list[list[int]]) -> frozenset[int]:
    return frozenset(point for first, last in runs for point in range(first, last + 1))


class CmapCache:
    def __init__(self, file: Path):
        self.file = file
        self._lock = threading.Lock()
        self._entries: dict[str, list[list[int]]] | None = None
        self._batching = False
        self._dirty = False

    def _load(self) -> dict[str, list[list[int]]]:
        if self._entries is None:
            try:
                data = json.loads(self.file.read_text(encoding="utf-8"))
                self._entries = data["cmaps"] if data.get("version") == VERSION else {}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                self._entries = {}
        return self._entries

    def get(self, path: str, index: int) -> frozenset[int] | None:
        key = _key(path, index)
        if key is None:
            return None
        with self._lock:
            runs = self._load().get(key)
        try:
            return from_ranges(runs) if runs is not None else None
        except (TypeError, ValueError):
            return None

    def put(self, path: str, index: int, codepoints: frozenset[int]) -> None:
        key = _key(path, index)
        if key is None:
            return
        with self._lock:
            entries = self._load()
            for stale in [k for k in entries if k.startswith(f"{path}|{index}|")]:
                del entries[stale]
            entries[key] = to_ranges(codepoints)
            self._dirty = True
            if not self._batching:
                self._write()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many puts, one write (the first scan of every installed font)."""
        self._batching = True
        try:
            yield
        finally:
            self._batching = False
            with self._lock:
                if self._dirty:
                    self._write()

    def _write(self) -> None:
        """Through a temporary file and a rename, so another process never reads half a file."""
        assert self._entries is not None
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_name(f"{self.file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps({"version": VERSION, "cmaps": self._entries}), encoding="utf-8")
            os.replace(tmp, self.file)
            self._dirty = False
        except OSError as exc:  # a read-only or full cache folder only costs the next process a re-read
            log.debug("font cmap cache not written (%s)", exc)
