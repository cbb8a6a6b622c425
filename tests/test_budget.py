"""The budget check that runs before every paid submit: money spent plus money promised must fit the cap.

Decided by the ledger in the claim's own transaction (`Store.claim_clip`), with the caps of `Budget`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from reelcrew.files import new_owner
from reelcrew.models import ClipStatus, VideoPrompt
from reelcrew.store import Store, costs
from reelcrew.video.generator import Budget

MODEL = "veo-3.1-fast-generate-001"
PRICE = 0.80  # an 8 s clip at $0.10 a second


@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'ledger.db'}")


def clip(store: Store, index: int, status: ClipStatus = ClipStatus.pending) -> str:
    made = store.ensure_clip("p1", VideoPrompt(index=index, scene_index=index, prompt=f"shot {index}"), MODEL)
    store.update_clip(made.key, status=status)
    return made.key


def charge(store: Store, key: str, usd: float = PRICE, at: float | None = None) -> None:
    """A finished clip's cost row, as the generator writes it; `at` moves it in time."""
    store.finish_clip(key, Path(f"/nowhere/{key}.mp4"), "0" * 64, 8.0, usd)
    if at is not None:  # the test moves the charge in time, behind the ledger's back
        day = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")
        with store.engine.begin() as c:
            c.execute(update(costs).where(costs.c.clip_key == key).values(at=at, day=day))


def refusal(store: Store, budget: Budget, key: str, price: float = PRICE) -> str | None:
    """Claim the clip for a submit as the generator does; the refusal is what the paused clip says."""
    mode, _ = store.claim_clip(key, new_owner(), 60.0, 100, 0.0, lambda spend: budget.refusal(spend, price),
                               budget.run_started)
    if mode == "submit":
        return None
    assert mode == "paused", mode
    error = store.clip(key).error or ""
    assert error.startswith("not submitted: ")
    return error.removeprefix("not submitted: ")


def test_no_caps_never_refuse(store):
    for i in range(1, 6):
        charge(store, clip(store, i, ClipStatus.done), usd=100)
    assert refusal(store, Budget(), clip(store, 9)) is None


def test_run_cap_allows_a_clip_that_fits_exactly(store):
    charge(store, clip(store, 1, ClipStatus.done))
    assert refusal(store, Budget(run_usd=2 * PRICE, run_started=0), clip(store, 2)) is None


def test_run_cap_refuses_the_clip_that_would_cross_it_and_says_what_was_spent(store):
    charge(store, clip(store, 1, ClipStatus.done))
    charge(store, clip(store, 2, ClipStatus.done))
    message = refusal(store, Budget(run_usd=2.00, run_started=0), clip(store, 3))
    assert message is not None
    assert "run budget $2.00" in message and "spent $1.60" in message


def test_clips_in_flight_count_as_promised_money(store):
    for i, status in enumerate((ClipStatus.submitting, ClipStatus.submitted, ClipStatus.downloading), start=1):
        clip(store, i, status)
    budget = Budget(run_usd=3.20, run_started=0)  # three promised + this one = $3.20: fits
    assert refusal(store, budget, clip(store, 4)) is None
    tight = Budget(run_usd=3.99, run_started=0)  # clip 4 was just claimed: four promised + this one = $4.00
    message = refusal(store, tight, clip(store, 5))
    assert message is not None and "4 in flight" in message


def test_clips_not_in_flight_promise_nothing(store):
    for i, status in enumerate((ClipStatus.pending, ClipStatus.paused, ClipStatus.failed, ClipStatus.filtered,
                                ClipStatus.ambiguous), start=1):
        clip(store, i, status)
    assert refusal(store, Budget(run_usd=PRICE, run_started=0), clip(store, 9)) is None


def test_the_clip_being_claimed_is_not_counted_twice(store):
    key = clip(store, 1, ClipStatus.submitting)  # a retry of a clip whose intent row is already there
    assert refusal(store, Budget(run_usd=PRICE, run_started=0), key) is None


def test_run_cap_counts_only_money_spent_since_the_run_started(store):
    started = time.time()
    charge(store, clip(store, 1, ClipStatus.done), usd=50, at=started - 3600)  # an earlier run's spending
    assert refusal(store, Budget(run_usd=PRICE, run_started=started), clip(store, 2)) is None


def test_daily_cap_counts_what_earlier_runs_spent_today(store):
    charge(store, clip(store, 1, ClipStatus.done))
    charge(store, clip(store, 2, ClipStatus.done))
    message = refusal(store, Budget(daily_usd=2.00), clip(store, 3))
    assert message is not None
    assert "daily budget $2.00" in message and "spent $1.60 today" in message
    assert refusal(store, Budget(daily_usd=2.40), clip(store, 4)) is None


def test_daily_cap_ignores_yesterdays_spending(store):
    yesterday = (datetime.now(UTC) - timedelta(days=1)).timestamp()
    charge(store, clip(store, 1, ClipStatus.done), usd=100, at=yesterday)
    assert refusal(store, Budget(daily_usd=PRICE), clip(store, 2)) is None


def test_daily_cap_also_counts_clips_in_flight(store):
    charge(store, clip(store, 1, ClipStatus.done))
    clip(store, 2, ClipStatus.submitted)
    message = refusal(store, Budget(daily_usd=2.00), clip(store, 3))
    assert message is not None and "1 in flight" in message


def test_free_clips_fit_any_cap(store):
    charge(store, clip(store, 1, ClipStatus.done))
    clip(store, 2, ClipStatus.submitted)
    assert refusal(store, Budget(run_usd=0.0, run_started=time.time() + 1, daily_usd=PRICE), clip(store, 3),
                   price=0.0) is None
