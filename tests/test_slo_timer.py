"""`reelcrew serve` re-checks the SLOs on a timer (issue 13 leftover): the `slo_broken` alert reaches the webhook
from a running server without cron, once per alert interval, and the timer is off without a webhook or at 0.
The timer's function is driven directly: no test here waits for an interval to pass."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from reelcrew import alerts, service
from reelcrew.errors import ReelcrewError
from reelcrew.settings import load_settings
from reelcrew.slo_watch import SloWatch
from reelcrew.web import create_app
from tests.test_observability import known_ledger, receiver  # noqa: F401 (receiver: the webhook fixture)

BROKEN = ["completion_rate", "timeout_rate", "sla_compliance", "file_success_rate"]


def test_a_running_serve_alerts_a_broken_slo_on_its_timer_once_per_interval(receiver):  # noqa: F811
    hook = receiver("ok")
    settings = load_settings(reelcrew_alert_webhook=hook.url, reelcrew_alert_interval=3600)
    app = create_app(settings, recover=False)
    with TestClient(app):  # serve's lifespan: the timer starts with the server
        watch = app.state.slo_watch
        assert watch.interval == 300 and watch.window == "24h" and watch._thread.is_alive()
        assert watch.check() == []  # an empty ledger: nothing to measure is not broken, and no alert
        known_ledger(service.open_store(settings))
        assert watch.check() == BROKEN
        assert alerts.current().flush()
        assert hook.texts() == ["[reelcrew] slo_broken: completion_rate = 0.800, timeout_rate = 0.200, "
                                "sla_compliance = 0.600, file_success_rate = 0.667 over the last 24h"]
        assert watch.check() == BROKEN  # still broken at the next tick: within REELCREW_ALERT_INTERVAL, not again
        assert alerts.current().flush() and len(hook.texts()) == 1
    watch._thread.join(timeout=30)  # stopped with the server: its wait returns at once
    assert not watch._thread.is_alive()


def test_the_timer_checks_every_interval_until_stopped_and_outlives_a_failed_check(caplog):
    settings = load_settings(reelcrew_slo_check_seconds=120)
    watch = SloWatch(settings, service.open_store(settings))
    waits, checks = [], []

    def wait(seconds: float) -> bool:  # the interval passes twice, then serve stops
        waits.append(seconds)
        return len(waits) > 2

    def check() -> list[str]:
        checks.append(len(checks))
        if len(checks) == 1:
            raise ReelcrewError("the ledger is locked", "wait")
        return []

    watch._stopped.wait = wait  # type: ignore[method-assign]
    watch.check = check  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="reelcrew.slo"):
        watch._loop()
    assert waits == [120, 120, 120] and checks == [0, 1]
    assert "SLO check failed: ReelcrewError" in caplog.text


def test_the_timer_is_off_without_a_webhook_or_at_zero_and_a_bad_window_is_refused(receiver):  # noqa: F811
    hook = receiver("ok")
    for settings in (load_settings(), load_settings(reelcrew_alert_webhook=hook.url, reelcrew_slo_check_seconds=0)):
        app = create_app(settings, recover=False)
        assert app.state.slo_watch is None
        app.state.studio.shutdown()
    with pytest.raises(ReelcrewError, match="REELCREW_SLO_CHECK_WINDOW|slo_check_window"):
        load_settings(reelcrew_slo_check_window="soon")
