"""The `slo_broken` alert from a running `reelcrew serve`, without cron: a daemon thread re-checks the SLOs every
REELCREW_SLO_CHECK_SECONDS over the last REELCREW_SLO_CHECK_WINDOW and alerts when one is broken.

Why a thread of its own: the check reads the ledger (one query over the window) and must never wait behind, or
hold up, a production's work or a request. The alert goes through the process's AlertSender (alerts.install), so
its once-per-interval rule holds here too, per process and across every process sharing the ledger; `reelcrew
slo` (cron) and this timer send the same message through the same `alert_broken`.
"""

from __future__ import annotations

import logging
import threading

from reelcrew import alerts
from reelcrew.settings import Settings
from reelcrew.slo import SloReport, compute, parse_window, shown
from reelcrew.store import Store

log = logging.getLogger("reelcrew.slo")


def alert_broken(settings: Settings, report: SloReport, window: str) -> bool:
    """Queue the `slo_broken` alert naming each broken SLO and its value; True when one was queued (a webhook is
    set, something is broken and this kind was not sent within REELCREW_ALERT_INTERVAL)."""
    broken = report.broken
    sender = alerts.install(settings) if broken else None
    if sender is None:
        return False
    values = ", ".join(f"{name} = {shown(report.slos[name].value, name)}" for name in broken)
    return sender.notify("slo_broken", f"{values} over the last {window}")


class SloWatch:
    """Checks the SLOs every `settings.reelcrew_slo_check_seconds` on a daemon thread until `stop`."""

    def __init__(self, settings: Settings, store: Store):
        self.settings, self.store = settings, store
        self.interval = settings.reelcrew_slo_check_seconds
        self.window = settings.reelcrew_slo_check_window
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reelcrew-slo-watch", daemon=True)

    def check(self, now: float | None = None) -> list[str]:
        """One check, what the timer runs each interval: the broken SLOs (alerted when a webhook is set)."""
        report = compute(self.store, self.settings.slo, parse_window(self.window), now)
        alert_broken(self.settings, report, self.window)
        return report.broken

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):  # the first check one interval after start
            try:
                self.check()
            except Exception as exc:  # a ledger briefly unreachable: the next interval tries again
                log.warning("SLO check failed: %s: %s", type(exc).__name__, str(exc)[:200])


def watch_for(settings: Settings, store: Store) -> SloWatch | None:
    """serve's SLO timer, or None when it has nothing to do: no webhook to alert, or the interval set to 0."""
    if settings.reelcrew_alert_webhook is None or settings.reelcrew_slo_check_seconds <= 0:
        return None
    return SloWatch(settings, store)
