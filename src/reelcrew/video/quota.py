"""The gates in front of Veo: a rate gate, 429 classification, and a breaker that survives restarts.

The rate gate is pyrate-limiter's SQLite bucket with a file lock, so every process on this
machine shares one requests-per-minute (and per-day) budget. The concurrency gate lives in
the ledger (operations in flight are clip rows), see generator.py. The breaker's state is a
ledger row, so a restart respects an open breaker or a paused day.
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from reelcrew.settings import Settings
from reelcrew.files import owner_alive
from reelcrew.store import ME, Store

try:
    from zoneinfo import ZoneInfo

    PACIFIC = ZoneInfo("America/Los_Angeles")
except Exception:  # no tz database: fall back to the configured reset interval
    PACIFIC = None


@dataclass
class QuotaSignal:
    kind: Literal["minute", "day", "bare"]
    retry_after: float | None = None


def classify_429(details: object) -> QuotaSignal:
    """Tell a per-minute from a per-day quota 429 by its QuotaFailure, and read RetryInfo's delay."""
    error = details.get("error", details) if isinstance(details, dict) else {}
    kind: Literal["minute", "day", "bare"] = "bare"
    retry_after = None
    for item in (error.get("details") or []) if isinstance(error, dict) else []:
        if not isinstance(item, dict):
            continue
        kind_type = item.get("@type", "")
        if kind_type.endswith("QuotaFailure"):
            ids = " ".join(str(v.get("quotaId", "")) for v in item.get("violations") or [])
            if "PerDay" in ids:
                kind = "day"
            elif "PerMinute" in ids and kind != "day":
                kind = "minute"
        elif kind_type.endswith("RetryInfo"):
            match = re.fullmatch(r"\s*([\d.]+)s\s*", str(item.get("retryDelay", "")))
            if match:
                retry_after = float(match.group(1))
    if kind == "bare" and retry_after is not None:  # only RetryInfo: a short window whose end Google told us
        kind = "minute"
    return QuotaSignal(kind, retry_after)


def next_quota_reset(now: float, fallback: float) -> float:
    """Daily quotas reset at midnight Pacific time."""
    if PACIFIC is None:
        return now + fallback
    local = datetime.fromtimestamp(now, PACIFIC)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp()


def jitter(seconds: float) -> float:
    return seconds * (1 + random.uniform(0, 0.25))


class QuotaPaused(Exception):
    """Submitting must stop until `until` (a daily quota, or a 429 storm longer than the reset interval)."""

    def __init__(self, until: float, reason: str):
        self.until, self.reason = until, reason
        super().__init__(f"{reason}; paused until {time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(until))}")


class Breaker:
    """Consecutive submit failures open it for VEO3_QUOTA_WAIT_TIME; then exactly one probe goes through."""

    def __init__(self, store: Store, settings: Settings):
        self.store, self.settings = store, settings

    def before_submit(self) -> float:
        """0 when this thread may submit now; else seconds to wait. Raises QuotaPaused for a paused day."""
        now = time.time()
        with self.store.tx() as c:
            q = self.store.quota(c)
            if q["open_until"] > now:
                if (q["reason"] or "").startswith("daily"):
                    raise QuotaPaused(q["open_until"], q["reason"])
                return q["open_until"] - now
            if q["consecutive_failures"] >= self.settings.veo3_consecutive_failure_threshold:
                # half-open: one probe at a time, the others wait for its verdict
                if q["probe_owner"] and q["probe_owner"] != ME and q["probe_until"] > now and owner_alive(q["probe_owner"]):
                    return min(1.0, q["probe_until"] - now)
                self.store.set_quota(c, probe_owner=ME, probe_until=now + self.settings.submit_timeout + 5)
        return 0.0

    def success(self) -> None:
        with self.store.tx() as c:
            self.store.quota(c)
            self.store.set_quota(c, consecutive_failures=0, open_until=0.0, reason=None, probe_owner=None, probe_until=0.0)

    def failure(self, reason: str) -> None:
        with self.store.tx() as c:
            q = self.store.quota(c)
            failures = q["consecutive_failures"] + 1
            values = dict(consecutive_failures=failures, probe_owner=None, probe_until=0.0)
            if failures >= self.settings.veo3_consecutive_failure_threshold:
                values.update(open_until=time.time() + self.settings.veo3_quota_wait_time,
                              reason=f"breaker open after {failures} consecutive failures (last: {reason})")
            self.store.set_quota(c, **values)
        if failures >= self.settings.veo3_consecutive_failure_threshold:
            self.store.log("breaker", f"opened for {self.settings.veo3_quota_wait_time:.0f}s after {failures} failures: {reason}")

    def pause_day(self, until: float, reason: str) -> None:
        with self.store.tx() as c:
            self.store.quota(c)
            self.store.set_quota(c, open_until=until, reason=f"daily quota exhausted ({reason})")
        self.store.log("quota", f"daily quota exhausted; submits paused until {time.ctime(until)}")


class RateGate:
    """Requests per minute (and per day) across every process on this machine.

    `window` is the seconds `rpm` counts in: 60 for Veo (VEO3_RATE_WINDOW_SECONDS), a few seconds in a
    test, so a test of the per-minute gate does not wait a real minute.
    """

    def __init__(self, path: Path, rpm: int, rpd: int = 0, window: float = 60.0):
        from pyrate_limiter import Duration, Limiter, Rate, SQLiteBucket

        path.parent.mkdir(parents=True, exist_ok=True)
        window_ms = max(1, round(window * 1000))
        rates = [Rate(rpm, window_ms)] + ([Rate(rpd, Duration.DAY)] if rpd else [])
        # a changed limit or window starts a fresh table rather than mis-reading the old one
        table = f"veo_rpm{rpm}_rpd{rpd}" + ("" if window_ms == Duration.MINUTE.value else f"_w{window_ms}")
        self.bucket = SQLiteBucket.init_from_file(rates, table=table, db_path=str(path), use_file_lock=True)
        self.limiter = Limiter(self.bucket)
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:  # the file lock is per thread; one thread at a time in this process
            self.limiter.try_acquire("veo-submit", blocking=True)
