"""The seed-004 service level objectives, computed from the ledger over a window.

A Veo operation is the seed's long asynchronous task: it starts at its receipt and ends when Veo says done (with a
video, or filtered by its safety filter: both are a finished task), when it reports an error, when OPERATION_TIMEOUT
gives up on it, or when it is lost (unknown to Veo, or past the Gemini API's two days). A clip's download and
validation is its file processing. docs/observability.md states each definition; the settings' `slo:` section holds
the bounds (the seed's numbers by default).
"""

from __future__ import annotations

import re
import time
from statistics import fmean

from pydantic import BaseModel

from reelcrew.errors import InputError
from reelcrew.settings import SloBound, SloTargets
from reelcrew.store import Store

FINISHED = ("done", "filtered")  # Veo finished the task (a filtered answer is a content verdict, not a failure)
NAMES = ("completion_rate", "avg_wait_seconds", "timeout_rate", "sla_compliance", "file_success_rate",
         "avg_processing_seconds")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class SloValue(BaseModel):
    value: float | None  # None: nothing in the window to measure (not broken)
    min: float | None
    max: float | None
    target: float
    samples: int  # how many operations (or file processings) the value is computed from
    ok: bool
    status: str  # ok | broken | no data


class SloReport(BaseModel):
    window_seconds: float
    since: float
    slos: dict[str, SloValue]

    @property
    def broken(self) -> list[str]:
        return [name for name, slo in self.slos.items() if not slo.ok]

    def as_json(self) -> dict:
        """The JSON of `reelcrew slo --json`: one key per SLO (the names above), then the window and verdict."""
        out: dict = {name: slo.model_dump() for name, slo in self.slos.items()}
        out.update(window_seconds=self.window_seconds, since=self.since, ok=not self.broken, broken=self.broken)
        return out


def parse_window(text: str) -> float:
    """`24h`, `30m`, `7d`, `90s`, `1w` or plain seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not match or float(match.group(1)) <= 0:
        raise InputError(f"--window {text!r} is not a length of time", "write it like 24h, 30m, 7d or 3600")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def shown(value: float | None, name: str) -> str:
    """An SLO's value as people read it: seconds to one decimal, rates to three (the name carries the unit)."""
    if value is None:
        return "-"
    return f"{value:.1f}" if name.endswith("_seconds") else f"{value:.3f}"


def _judge(value: float | None, bound: SloBound, samples: int) -> SloValue:
    ok = value is None or ((bound.min is None or value >= bound.min - 1e-12)
                           and (bound.max is None or value <= bound.max + 1e-12))
    return SloValue(value=None if value is None else round(value, 6), min=bound.min, max=bound.max,
                    target=bound.target, samples=samples, ok=ok,
                    status="no data" if value is None else "ok" if ok else "broken")


def compute(store: Store, targets: SloTargets, window_seconds: float, now: float | None = None) -> SloReport:
    """Each SLO over the operations that ended (and the file processings that ended) in the window."""
    now = time.time() if now is None else now
    since = now - window_seconds
    rows = store.operation_rows(since)
    ended = [r for r in rows if r["ending"] and r["ended_at"] is not None and since <= r["ended_at"] <= now]
    finished = [r for r in ended if r["ending"] in FINISHED]
    waits = [r["ended_at"] - r["submitted_at"] for r in finished if r["submitted_at"] is not None]
    on_time = [w for w in waits if w <= targets.sla_seconds]
    processed = [r for r in rows if r["processing"] and r["processed_at"] is not None
                 and since <= r["processed_at"] <= now]
    good = [r for r in processed if r["processing"] == "ok"]
    spans = [r["processed_at"] - r["processing_started_at"] for r in good if r["processing_started_at"] is not None]

    def share(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    values = {
        "completion_rate": (share(len(finished), len(ended)), len(ended)),
        "avg_wait_seconds": (fmean(waits) if waits else None, len(waits)),
        "timeout_rate": (share(sum(1 for r in ended if r["ending"] == "timeout"), len(ended)), len(ended)),
        "sla_compliance": (share(len(on_time), len(ended)), len(ended)),
        "file_success_rate": (share(len(good), len(processed)), len(processed)),
        "avg_processing_seconds": (fmean(spans) if spans else None, len(spans)),
    }
    slos = {name: _judge(value, getattr(targets, name), samples) for name, (value, samples) in values.items()}
    return SloReport(window_seconds=window_seconds, since=since, slos=slos)
