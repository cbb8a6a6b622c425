"""Alerts to a Slack-compatible webhook (`REELCREW_ALERT_WEBHOOK`), sent off the work's path.

Why a listener on the ledger's events: the breaker, the daily-quota pause, a budget refusal, a failed production and a
dead letter are all recorded through `Store.log` / `Store.set_production_status` / `Store.claim_clip`, whichever code
path (CLI, serve, a Celery worker) reaches them; one listener there covers them all. The listener only puts a message
on a bounded queue; a daemon thread posts it with a short timeout. A receiver that hangs, fails or is missing costs
the batch nothing: a full queue drops the alert (logged), a failed post is logged, nothing raises into the work.
Each kind is sent at most once per `REELCREW_ALERT_INTERVAL` seconds: per process at once, and across processes by a
claim in the ledger made on the sender's thread. The URL is a secret: only its scheme and host are ever logged.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from reelcrew import store as ledger

log = logging.getLogger("reelcrew.alerts")
KINDS = ("breaker_open", "quota_day_pause", "budget_reached", "production_failed", "production_incomplete",
         "dead_letter", "slo_broken")
POST_TIMEOUT = 3.0
QUEUE_SIZE = 100


def masked(url: str) -> str:
    """`https://hooks.slack.com/****`: the path of a webhook URL is its secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{':' + str(parts.port) if parts.port else ''}/****"


def alert_kind(event: dict[str, Any]) -> str | None:
    """Which alert (if any) a ledger event is."""
    kind, message = event.get("kind"), str(event.get("message") or "")
    if kind == "breaker":
        return "breaker_open"
    if kind == "quota" and message.startswith("daily quota"):
        return "quota_day_pause"
    if kind in ("budget_reached", "production_failed", "production_incomplete", "dead_letter", "slo_broken"):
        return kind
    return None


class AlertSender:
    """A bounded queue and one daemon thread that posts `{"text": ...}` to the webhook."""

    def __init__(self, url: str, interval: float, timeout: float = POST_TIMEOUT, size: int = QUEUE_SIZE,
                 clock: Callable[[], float] = time.monotonic, claim: Callable[[str], bool] | None = None):
        """`claim(kind)`: the fleet-wide once-per-interval check (the ledger's `claim_alert`), asked on the
        sender's thread, never the work's; without it the interval holds per process only."""
        self.url, self.interval, self.timeout, self.clock, self.claim = url, interval, timeout, clock, claim
        self._queue: queue.Queue[dict | None] = queue.Queue(maxsize=size)
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._post_loop, name="reelcrew-alerts", daemon=True)
        self._thread.start()

    def notify(self, kind: str, message: str, production_id: str | None = None) -> bool:
        """Queue an alert unless its kind was sent within the interval; never blocks, never raises."""
        now = self.clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval:
                return False
            self._last[kind] = now
        where = f" (production {production_id})" if production_id else ""
        payload = {"text": f"[reelcrew] {kind}{where}: {message}"[:3000], "_kind": kind}
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            log.warning("alert %s dropped: %d alerts are waiting for %s", kind, self._queue.qsize(), masked(self.url))
            return False
        return True

    def on_event(self, event: dict[str, Any]) -> None:
        """The ledger's listener (reelcrew.store.add_listener)."""
        kind = alert_kind(event)
        if kind is not None:
            self.notify(kind, str(event.get("message") or ""), event.get("production_id"))

    def _post_loop(self) -> None:
        while True:
            payload = self._queue.get()
            try:
                if payload is None:
                    return
                kind = payload.pop("_kind")
                if self._claimed(kind):
                    self._post(payload)
            finally:
                self._queue.task_done()

    def _claimed(self, kind: str) -> bool:
        """Another process may have sent this kind within the interval (several workers share one ledger)."""
        if self.claim is None:
            return True
        try:
            return self.claim(kind)
        except Exception as exc:  # the ledger unreachable or full: better a second alert than a lost one
            log.warning("alert %s: could not check the ledger (%s); sending it", kind, type(exc).__name__)
            return True

    def _post(self, payload: dict) -> None:
        request = urllib.request.Request(self.url, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310 (the operator's URL)
                answer.read(1024)
            self.sent += 1
        except Exception as exc:  # a 500, a refused connection, a receiver that never answers: logged, not raised
            self.failed += 1
            log.warning("alert not delivered to %s: %s", masked(self.url), type(exc).__name__)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued alert was posted (or failed); True when the queue emptied in time."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Stop the thread after what is queued (it is a daemon: an exiting process never waits for it)."""
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass


_installed: AlertSender | None = None
_install_lock = threading.Lock()


def install(settings) -> AlertSender | None:
    """Send this process's alerts to REELCREW_ALERT_WEBHOOK (once per process; a changed URL replaces it)."""
    global _installed
    secret = settings.reelcrew_alert_webhook
    url = secret.get_secret_value() if secret else None
    with _install_lock:
        if _installed is not None and (url is None or _installed.url != url):
            uninstall()
        if url and _installed is None:
            interval = settings.reelcrew_alert_interval
            _installed = AlertSender(url, interval, claim=_ledger_claim(settings, interval))
            ledger.add_listener(_installed.on_event)
            atexit.unregister(_flush_at_exit)
            atexit.register(_flush_at_exit)
        return _installed


def _ledger_claim(settings, interval: float) -> Callable[[str], bool]:
    """The fleet-wide check, opening the ledger on first use (on the sender's thread)."""
    opened: list = []

    def claim(kind: str) -> bool:
        if not opened:
            from reelcrew.store import open_ledger

            opened.append(open_ledger(settings))
        return opened[0].claim_alert(kind, interval)

    return claim


def _flush_at_exit() -> None:
    """A command that ends right after a production failed still sends that alert (waiting a few seconds at most,
    and only while alerts are pending)."""
    if _installed is not None:
        _installed.flush(POST_TIMEOUT + 1)


def uninstall() -> None:
    global _installed
    if _installed is not None:
        ledger.remove_listener(_installed.on_event)
        _installed.close()
        _installed = None


def current() -> AlertSender | None:
    return _installed
