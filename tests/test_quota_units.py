"""The quota rules on their own: 429 bodies as Google sends them, the daily reset, the rate window."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from reelcrew.settings import load_settings
from reelcrew.store import Store
from reelcrew.video import quota
from reelcrew.video.quota import RateGate, classify_429, next_quota_reset

HELP = {"@type": "type.googleapis.com/google.rpc.Help",
        "links": [{"description": "Learn more about Gemini API quotas",
                   "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]}


def quota_429(violations: list[dict] | None, retry_delay: str | None = None, help_link: bool = True) -> dict:
    """A 429 body in the shape the Gemini API sends (as google-genai hands it over in `ClientError.details`)."""
    details: list[dict] = []
    if violations is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations})
    if help_link:
        details.append(HELP)
    if retry_delay is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay})
    return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                      "message": "You exceeded your current quota, please check your plan and billing details. "
                                 "For more information on this error, head to: "
                                 "https://ai.google.dev/gemini-api/docs/rate-limits.",
                      "details": details}}


def violation(quota_id: str, metric: str = "generativelanguage.googleapis.com/predict_long_running_requests") -> dict:
    return {"quotaMetric": metric, "quotaId": quota_id,
            "quotaDimensions": {"location": "global", "model": "veo-3.1-fast-generate-001"}, "quotaValue": "10"}


# -- classify_429 -------------------------------------------------------------------------------

def test_per_minute_quota_with_retry_info_waits_the_delay_google_gives():
    signal = classify_429(quota_429([violation("PredictLongRunningRequestsPerMinutePerProjectPerModel")], "26s"))
    assert (signal.kind, signal.retry_after) == ("minute", 26.0)


def test_retry_delay_is_a_protobuf_duration_with_fractional_seconds():
    body = quota_429([violation("GenerateRequestsPerMinutePerProjectPerModel-FreeTier")], "45.837906927s")
    assert classify_429(body).retry_after == pytest.approx(45.837906927)


def test_per_day_quota_is_a_day_even_when_google_also_says_retry_soon():
    signal = classify_429(quota_429([violation("PredictLongRunningRequestsPerDayPerProjectPerModel")], "13s"))
    assert signal.kind == "day"


def test_a_body_naming_both_windows_is_a_day_whatever_the_order():
    # Google lists every quota the request broke; once the daily one is among them, waiting a minute is useless
    minute = violation("GenerateRequestsPerMinutePerProjectPerModel-FreeTier")
    day = violation("GenerateRequestsPerDayPerProjectPerModel-FreeTier")
    assert classify_429(quota_429([minute, day], "40s")).kind == "day"
    assert classify_429(quota_429([day, minute], "40s")).kind == "day"


def test_bare_429_without_details_is_bare_with_no_delay():
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                      "message": "Resource has been exhausted (e.g. check quota)."}}
    signal = classify_429(body)
    assert (signal.kind, signal.retry_after) == ("bare", None)


def test_vertex_shared_capacity_429_is_bare():
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                      "message": "Resource exhausted. Please try again later. Please refer to https://"
                                 "cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
                      "errors": [{"message": "Resource exhausted.", "domain": "global",
                                  "reason": "rateLimitExceeded"}]}}
    assert classify_429(body).kind == "bare"


def test_help_link_alone_is_bare():
    assert classify_429(quota_429(None)).kind == "bare"


def test_retry_info_alone_is_a_short_window_whose_delay_is_honoured():
    signal = classify_429(quota_429(None, "38s", help_link=False))
    assert (signal.kind, signal.retry_after) == ("minute", 38.0)


@pytest.mark.parametrize("details", [None, "upstream connect error", [], {"error": "quota"},
                                     {"error": {"details": "x"}}])
def test_bodies_that_are_not_google_json_are_bare(details):
    assert classify_429(details).kind == "bare"


def test_unreadable_retry_delay_is_ignored_not_guessed():
    body = quota_429([violation("PredictLongRunningRequestsPerMinutePerProjectPerModel")], "soon")
    assert (classify_429(body).kind, classify_429(body).retry_after) == ("minute", None)


# -- next_quota_reset: midnight Pacific -----------------------------------------------------------

def utc(*args) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("now,reset", [
    # winter (PST, UTC-8): the reset is 08:00 UTC
    (utc(2026, 11, 27, 18, 0), utc(2026, 11, 28, 8, 0)),
    # after midnight UTC but still yesterday in California: today's Pacific midnight, not tomorrow's
    (utc(2026, 11, 27, 2, 0), utc(2026, 11, 27, 8, 0)),
    # one second before midnight Pacific; and at midnight itself, the next one
    (utc(2026, 11, 28, 7, 59, 59), utc(2026, 11, 28, 8, 0)),
    (utc(2026, 11, 28, 8, 0), utc(2026, 11, 29, 8, 0)),
    # summer (PDT, UTC-7): the reset is 07:00 UTC
    (utc(2026, 7, 4, 12, 0), utc(2026, 7, 5, 7, 0)),
    # spring forward, 8 March 2026: 01:30 PST; that day has 23 hours and ends at 07:00 UTC
    (utc(2026, 3, 8, 9, 30), utc(2026, 3, 9, 7, 0)),
    # the evening before it: midnight is still PST
    (utc(2026, 3, 8, 7, 30), utc(2026, 3, 8, 8, 0)),
    # fall back, 1 November 2026: 01:30 PDT (first pass) and 01:30 PST (second pass); the day has 25 hours
    (utc(2026, 11, 1, 8, 30), utc(2026, 11, 2, 8, 0)),
    (utc(2026, 11, 1, 9, 30), utc(2026, 11, 2, 8, 0)),
    # the evening before it: midnight is still PDT
    (utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 7, 0)),
])
def test_daily_quota_resets_at_the_next_midnight_pacific(now, reset):
    assert quota.PACIFIC is not None, "the tz database is missing: install tzdata"
    assert next_quota_reset(now, fallback=3600) == reset


def test_without_a_tz_database_the_configured_interval_is_used(monkeypatch):
    monkeypatch.setattr(quota, "PACIFIC", None)
    assert next_quota_reset(1_000_000.0, fallback=3600) == 1_003_600.0


# -- the rate window (VEO3_RATE_WINDOW_SECONDS) ---------------------------------------------------

def test_rate_window_is_a_setting_with_veo_default_of_a_minute(monkeypatch):
    assert load_settings().veo3_rate_window_seconds == 60
    monkeypatch.setenv("VEO3_RATE_WINDOW_SECONDS", "5")
    assert load_settings().veo3_rate_window_seconds == 5


def test_rate_gate_admits_rpm_submits_per_window_then_waits_for_the_window(tmp_path):
    gate = RateGate(Store(f"sqlite:///{tmp_path / 'ledger.db'}"), rpm=2, window=1.5)
    start = time.monotonic()
    gate.acquire()
    gate.acquire()
    gate.acquire()  # the third must wait until the first leaves the window
    waited = time.monotonic() - start
    assert 1.5 - 0.01 <= waited < 30  # the window asked for, not a minute

