"""The checks `/readyz` and `reelcrew doctor` share: ledger, broker (when one is set), disk space, ffmpeg, font.

One list so the two never disagree: `/readyz` answers ok / not ok per name (no details: it needs no token), doctor
prints the details with the fix.
"""

from __future__ import annotations

import shutil
from typing import NamedTuple

from reelcrew.errors import ReelcrewError
from reelcrew.settings import Settings
from reelcrew.store import Store

MIN_FREE_BYTES = 2 * 1024**3  # a batch of 8 s clips plus its renders fits in far less; below this, say so early
BROKER_TIMEOUT = 1.0


class Check(NamedTuple):
    name: str
    ok: bool
    detail: str


def ledger_check(settings: Settings, store: Store | None = None) -> Check:
    try:
        from reelcrew.store import open_ledger, safe_url

        store = store or open_ledger(settings)
        in_flight = store.in_flight()
        return Check("ledger", True, f"{safe_url(store.url)} ({in_flight} operation(s) in flight)")
    except ReelcrewError as exc:
        return Check("ledger", False, f"{exc.problem}; {exc.fix}")
    except Exception as exc:  # a database that went away under a running server
        return Check("ledger", False, f"cannot read the ledger ({type(exc).__name__}); check REELCREW_DB")


def broker_check(url: str) -> Check:
    from reelcrew.metrics import QUEUES

    try:
        import redis

        redis.Redis.from_url(url, socket_timeout=BROKER_TIMEOUT, socket_connect_timeout=BROKER_TIMEOUT).ping()
        return Check("broker", True, f"answers ({', '.join(QUEUES)} queues)")
    except Exception as exc:
        return Check("broker", False, f"REELCREW_BROKER does not answer ({type(exc).__name__}); start Redis or "
                                      "unset REELCREW_BROKER to run in-process")


def disk_checks(settings: Settings) -> list[Check]:
    from reelcrew.files import ensure_writable

    out = settings.reelcrew_output_dir
    try:
        ensure_writable(out)
        free = shutil.disk_usage(out).free
    except OSError as exc:
        return [Check("output folder", False, f"{out}: {exc.strerror}; choose another --output-dir")]
    ok = free > MIN_FREE_BYTES
    return [Check("output folder", True, f"{out.resolve()} writable"),
            Check("disk space", ok, f"{free / 2**30:.1f} GiB free" + ("" if ok else "; free some space"))]


def ffmpeg_check() -> Check:
    try:
        from reelcrew.media import ffmpeg_exe

        return Check("ffmpeg", True, ffmpeg_exe())
    except Exception as exc:
        return Check("ffmpeg", False, f"{exc}; reinstall imageio-ffmpeg")


def font_check(settings: Settings) -> Check:
    try:
        from reelcrew.assemble.fonts import find_font

        sample = "中文字幕 Subtitles" if settings.language in ("auto", "zh") else "Subtitles"
        font = find_font(sample, settings.subtitles.font)
        return Check("subtitle font", True, f"{font.path} covers {sample!r}")
    except ReelcrewError as exc:
        return Check("subtitle font", False, f"{exc.problem}; {exc.fix}")


def checks(settings: Settings, store: Store | None = None) -> list[Check]:
    """Every shared check, in the order doctor prints them."""
    from reelcrew.metrics import broker_url

    broker = broker_url(settings)
    return [ledger_check(settings, store), *([broker_check(broker)] if broker else []), *disk_checks(settings),
            ffmpeg_check(), font_check(settings)]


READY_NAMES = {"ledger": "ledger", "broker": "broker", "output folder": "disk", "disk space": "disk",
               "ffmpeg": "ffmpeg", "subtitle font": "font"}


def readiness(settings: Settings, store: Store) -> dict[str, bool]:
    """`/readyz`: ok / not ok per short name (both disk checks fold into `disk`)."""
    out: dict[str, bool] = {}
    for check in checks(settings, store):
        name = READY_NAMES[check.name]
        out[name] = out.get(name, True) and check.ok
    return out
