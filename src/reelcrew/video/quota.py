"""The gates in front of Veo: a rate gate, 429 classification, and a breaker that survives restarts.

The rate gate is a pyrate-limiter bucket beside the ledger, so every process that shares the
ledger shares one requests-per-minute (and per-day) budget. The concurrency gate lives in
the ledger (operations in flight are clip rows), see generator.py. The breaker's state is a
ledger row, so a restart respects an open breaker or a paused day.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from reelcrew.files import new_owner
from reelcrew.settings import Settings
from reelcrew.store import Store

try:
    from zoneinfo import ZoneInfo

    PACIFIC: ZoneInfo | None = ZoneInfo("America/Los_Angeles")
except Exception:  # no tz database: fall back to the configured reset interval
    PACIFIC = None

log = logging.getLogger("reelcrew.quota")


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
    """Consecutive submit failures open it for VEO3_QUOTA_WAIT_TIME; then exactly one probe goes through.

    Its state is a ledger row (`Store.breaker_*`), shared by every process using the ledger."""

    def __init__(self, store: Store, settings: Settings, name: str = "veo"):
        self.store, self.settings, self.name = store, settings, name  # "veo" for clips, "writers" for Gemini text

    def before_submit(self, owner: str | None = None) -> float:
        """0 when this claim may submit now; else seconds to wait. Raises QuotaPaused for a paused day."""
        verdict, value, reason = self.store.breaker_gate(owner or new_owner(),
                                                         self.settings.veo3_consecutive_failure_threshold,
                                                         self.settings.submit_timeout + 5, self.name)
        if verdict == "open":
            if (reason or "").startswith("daily"):
                raise QuotaPaused(value, reason or "daily quota exhausted")
            return max(value - time.time(), 0.0)
        return value

    def success(self) -> None:
        self.store.breaker_success(self.name)

    def failure(self, reason: str) -> None:
        threshold, wait = self.settings.veo3_consecutive_failure_threshold, self.settings.veo3_quota_wait_time
        failures = self.store.breaker_failure(reason, threshold, wait, self.name)
        if failures >= threshold:
            self.store.log("breaker", f"opened for {wait:.0f}s after {failures} failures: {reason}")

    def pause_day(self, until: float, reason: str) -> None:
        self.store.breaker_pause(until, f"daily quota exhausted ({reason})", self.name)
        self.store.log("quota", f"daily quota exhausted; submits paused until {time.ctime(until)}")


def redis_bucket(broker: str, rates: list, table: str):
    """pyrate-limiter's RedisBucket on the broker's Redis, keyed `reelcrew:rate:<table>`, that survives a Redis
    restart: its Lua script is loaded again (a restarted Redis forgets scripts) and, while Redis is down, a take
    waits for it (up to REDIS_DOWN_WAIT seconds, as it would wait for a slot) instead of failing the clip."""
    from pyrate_limiter import RedisBucket
    from pyrate_limiter.buckets.redis_bucket import LuaScript
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisDown
    from redis.exceptions import NoScriptError

    class SurvivingRedisBucket(RedisBucket):
        def _check_and_insert(self, item):
            deadline = time.monotonic() + REDIS_DOWN_WAIT
            while True:
                try:
                    try:
                        return super()._check_and_insert(item)
                    except NoScriptError:
                        self.script_hash = str(self.redis.script_load(LuaScript.PUT_ITEM))  # a sync client
                        return super()._check_and_insert(item)
                except RedisDown:
                    if time.monotonic() > deadline:
                        raise
                    log.warning("the rate gate's Redis is unreachable; waiting for it")
                    time.sleep(1.0)

        def leak(self, current_timestamp=None):
            try:  # the leaker thread must outlive a Redis restart (old entries are dropped on its next turn)
                return super().leak(current_timestamp)
            except RedisDown:
                return 0

    return SurvivingRedisBucket.init(rates, Redis.from_url(broker), f"reelcrew:rate:{table}")


REDIS_DOWN_WAIT = 120.0


class RateGate:
    """Requests per window (VEO3_RATE_WINDOW_SECONDS, a minute by default; a few seconds in a test) and per day,
    shared by everyone who shares the ledger.

    The bucket lives beside the ledger (`Store.rate_bucket`): a SQLite file next to a SQLite ledger, a
    table in a PostgreSQL one; so two output folders, or two machines on one PostgreSQL, share one rate. With a
    broker (`REELCREW_BROKER=redis://...`) it lives in that Redis instead (`redis_bucket`): every worker on
    every machine already reaches it, and a Lua script makes each take atomic without a database lock."""

    def __init__(self, store: Store, rpm: int, rpd: int = 0, window: float = 60.0, name: str = "veo",
                 broker: str | None = None):
        from pyrate_limiter import Duration, Limiter, Rate

        rates = [Rate(rpm, int(window * 1000))] + ([Rate(rpd, Duration.DAY)] if rpd else [])
        # a changed limit starts a fresh window rather than mis-reading the old one
        table = f"{name}_rpm{rpm}_w{int(window * 1000)}_rpd{rpd}"  # one bucket per name: "veo", "writers"
        self.item = f"{name}-submit"
        self.bucket = redis_bucket(broker, rates, table) if broker else store.rate_bucket(rates, table)
        self.limiter = Limiter(self.bucket)
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:  # the file lock is per thread; one thread at a time in this process
            self.limiter.try_acquire(self.item, blocking=True)
