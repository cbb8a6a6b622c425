"""Prometheus metrics computed from the ledger at scrape time.

Why a collector over the ledger rather than counters in memory: every process that works on the ledger (the CLI,
`reelcrew serve`, a Celery worker on another machine) writes its submits, operation ends, costs and clip states
there, so one scrape of any process that can read the ledger sees the whole fleet, with no multiprocess mode, no
push gateway, and nothing lost when a worker restarts. Counters are monotonic because the ledger only grows (a
`reelcrew prune` keeps the rows). Labels are bounded: outcomes, backends, statuses, stages, models and kinds, never a
production id or a free-text reason.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from reelcrew.settings import Settings
from reelcrew.store import Store

log = logging.getLogger("reelcrew.metrics")
SUBMIT_OUTCOMES = ("accepted", "quota_minute", "quota_day", "quota_other", "unavailable", "rejected", "ambiguous")
QUEUES = ("writers", "clips", "render", "maintenance")  # the Celery queues (when REELCREW_BROKER is set)
# Veo latency is 11 s to 6 min; downloads and waits are seconds to minutes; render ratios are around 0.1 to 10
SECONDS_BUCKETS = (1, 5, 10, 30, 60, 120, 180, 300, 600, 1200, 1800, 3600)
RATIO_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
SUPPORT_CODE = re.compile(r"\b(\d{8})\b")


def filter_label(error: str | None) -> str:
    """A bounded label for a safety-filter reason: Veo's support code (a fixed list Google documents), `mock` for the
    rehearsal's filter, else `other`. The full text stays in the ledger and in `reelcrew status`."""
    text = error or ""
    if "mock safety filter" in text:
        return "mock"
    code = SUPPORT_CODE.search(text)
    return code.group(1) if code else "other"


def _histogram(name: str, doc: str, values: Iterable[float], buckets: tuple[float, ...]) -> HistogramMetricFamily:
    values = [v for v in values if v is not None and v >= 0]
    counts = [sum(1 for v in values if v <= bound) for bound in buckets]
    family = HistogramMetricFamily(name, doc)
    family.add_metric([], [(str(float(b)), c) for b, c in zip(buckets, counts, strict=True)]
                      + [("+Inf", len(values))], sum(values))
    return family


def queue_depths(broker: str | None, timeout: float = 0.5) -> dict[str, int] | None:
    """LLEN of each Celery queue in Redis, or None (no broker, or it did not answer within `timeout`)."""
    if not broker or not broker.startswith(("redis://", "rediss://")):
        return None
    try:
        import redis  # the celery extra brings it; without it there are no queue depths to read

        client = redis.Redis.from_url(broker, socket_timeout=timeout, socket_connect_timeout=timeout)
        return {queue: int(client.llen(queue)) for queue in QUEUES}
    except Exception as exc:  # a scrape never fails because the broker is away: the gauge is just absent
        log.debug("queue depths unavailable: %s", type(exc).__name__)
        return None


def broker_url(settings: Settings) -> str | None:
    return getattr(settings, "reelcrew_broker", None) or os.environ.get("REELCREW_BROKER") or None


class LedgerCollector(Collector):
    """Reads `Store.observability_facts()` on each scrape and turns it into metric families."""

    def __init__(self, store: Store, settings: Settings):
        self.store, self.settings = store, settings

    def collect(self) -> Iterator[Any]:
        facts = self.store.observability_facts()
        yield from self._submits(facts)
        yield from self._clips_and_productions(facts)
        yield from self._money(facts)
        yield from self._llm(facts)
        yield from self._durations(facts)
        yield from self._gates(facts)
        depths = queue_depths(broker_url(self.settings))
        if depths is not None:
            queue = GaugeMetricFamily("reelcrew_queue_depth", "Tasks waiting in each Celery queue", labels=["queue"])
            for name, depth in depths.items():
                queue.add_metric([name], depth)
            yield queue

    @staticmethod
    def _submits(facts: dict) -> Iterator[Any]:
        submits = CounterMetricFamily("reelcrew_veo_submits", "Veo submit requests by outcome and backend "
                                      "(rehearsed 429s count under backend mock)", labels=["outcome", "backend"])
        for outcome, backend, count in facts["submits"]:
            submits.add_metric([outcome, backend or "unknown"], count)
        yield submits

    @staticmethod
    def _clips_and_productions(facts: dict) -> Iterator[Any]:
        by_status: Counter[tuple[str, str]] = Counter()
        for status, error in facts["clips"]:
            by_status[(status, filter_label(error) if status == "filtered" else "")] += 1
        clips = GaugeMetricFamily("reelcrew_clips", "Clips in the ledger by status (and filter reason when filtered)",
                                  labels=["status", "reason"])
        for (status, reason), count in sorted(by_status.items()):
            clips.add_metric([status, reason], count)
        yield clips
        prods = GaugeMetricFamily("reelcrew_productions", "Productions by status", labels=["status"])
        for status, count in facts["productions"]:
            prods.add_metric([status], count)
        yield prods

    def _money(self, facts: dict) -> Iterator[Any]:
        spent = CounterMetricFamily("reelcrew_spent_usd", "Money charged (finished clips and writers' calls), USD",
                                    labels=["kind", "model"])
        for kind, model, usd in facts["spent"]:
            spent.add_metric([kind or "clip", model or "unknown"], float(usd or 0.0))
        yield spent
        daily = self.settings.reelcrew_daily_budget_usd
        if daily is not None:
            yield GaugeMetricFamily("reelcrew_budget_left_today_usd", "What REELCREW_DAILY_BUDGET_USD leaves today",
                                    value=max(daily - facts["spent_today"], 0.0))
        yield GaugeMetricFamily("reelcrew_spent_today_usd", "Money charged this UTC day, USD",
                                value=facts["spent_today"])

    @staticmethod
    def _llm(facts: dict) -> Iterator[Any]:
        answers: Counter[str] = Counter()
        repairs: Counter[str] = Counter()
        for stage, count in facts["llm"]:
            if count:
                answers[stage] += count
                repairs[stage] += max(count - 1, 0)  # each stage's first answer is the answer; the rest are repairs
        for name, doc, counts in (("reelcrew_llm_answers", "Writers' LLM answers by stage", answers),
                                  ("reelcrew_llm_repairs", "Writers' answers sent back for repair by stage", repairs)):
            family = CounterMetricFamily(name, doc, labels=["stage"])
            for stage, count in sorted(counts.items()):
                family.add_metric([stage], count)
            yield family

    @staticmethod
    def _durations(facts: dict) -> Iterator[Any]:
        yield _histogram("reelcrew_veo_operation_seconds", "Veo operation duration, submit to end",
                         (end - start for _, start, end, _ in facts["operations"] if start and end), SECONDS_BUCKETS)
        yield _histogram("reelcrew_veo_submit_wait_seconds", "Wait before a submit (rate, concurrency, breaker, "
                         "back-off)", facts["waits"], SECONDS_BUCKETS)
        yield _histogram("reelcrew_clip_download_seconds", "A clip's download and validation",
                         (end - start for outcome, start, end in facts["processing"] if outcome == "ok" and start),
                         SECONDS_BUCKETS)
        ratios = []
        for data in facts["finals"]:
            try:
                final = json.loads(data)
            except (TypeError, ValueError):
                continue
            if final.get("render_seconds") is not None and final.get("duration"):
                ratios.append(final["render_seconds"] / final["duration"])
        yield _histogram("reelcrew_render_seconds_per_output_second", "Render time per second of final video",
                         ratios, RATIO_BUCKETS)
        endings = CounterMetricFamily("reelcrew_veo_operations_ended", "Veo operations by how they ended",
                                      labels=["ending"])
        for ending, count in sorted(Counter(e for e, _, end, _ in facts["operations"] if end).items()):
            endings.add_metric([ending], count)
        yield endings

    @staticmethod
    def _gates(facts: dict) -> Iterator[Any]:
        yield GaugeMetricFamily("reelcrew_veo_in_flight", "Veo operations in flight now", value=facts["in_flight"])
        now = time.time()
        state = GaugeMetricFamily("reelcrew_breaker_open", "1 while the gate's breaker is open or its day is paused",
                                  labels=["gate"])
        failures = GaugeMetricFamily("reelcrew_breaker_consecutive_failures", "Consecutive failures the breaker counts",
                                     labels=["gate"])
        for gate in facts["gates"]:
            state.add_metric([gate["name"]], 1.0 if (gate["open_until"] or 0) > now else 0.0)
            failures.add_metric([gate["name"]], gate["consecutive_failures"] or 0)
        yield state
        yield failures


def registry_for(store: Store, settings: Settings) -> CollectorRegistry:
    """A registry holding only the ledger's collector (no process metrics: they describe one process, not the
    fleet)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(store, settings))
    return registry


def exposition(store: Store, settings: Settings) -> bytes:
    """The text format Prometheus scrapes."""
    return generate_latest(registry_for(store, settings))
