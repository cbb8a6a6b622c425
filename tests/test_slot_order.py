"""The ledger's line for Veo slots (issue 12): when a slot frees, the clip of the production whose prompts were
ready first gets it, whichever worker asks first, so the first production's final is cut while the others' clips
are made. Two task contexts stand for two workers on one ledger (SQLite, and PostgreSQL with the `servers`
marker); the steps run in rounds in the order worst for the first production: the second's steps always ask
first. The real SDK against the fake Google server; each clip's order is read from the ledger's receipts."""

from __future__ import annotations

import time

import pytest

from reelcrew import service
from reelcrew.models import ClipStatus
from reelcrew.settings import load_settings
from reelcrew.tasks import Step, Tasks

ROUNDS = 5000  # a guard against a livelock, far above what a run needs


def _rounds(queue: list[tuple[Tasks, Step]], first: Tasks | None = None) -> list[tuple[Tasks, Step]]:
    """Run the steps in rounds (countdowns ignored: every step is due each round) until none is left; in each
    round the follow steps first (a clip made frees its slot), then `first`'s steps, then the others'."""
    for _ in range(ROUNDS):
        if not queue:
            return queue
        queue.sort(key=lambda pair: (pair[1].task != "follow_clip", pair[0] is not first))
        queue = [(tasks, follow) for tasks, step in queue for follow in tasks.run(step)]
    raise AssertionError(f"{len(queue)} steps still looping after {ROUNDS} rounds: {queue[:3]}")


def _submit_order(store, prods) -> list[str]:
    """The production of each accepted submit, in the order the ledger committed the receipts."""
    owner = {clip.key: prod.id for prod in prods for clip in store.production_clips(prod.id)}
    return [owner[r["clip_key"]] for r in store.receipts() if r["outcome"] == "accepted"]


@pytest.mark.slow
def test_the_first_productions_clips_get_every_slot_before_the_second_productions(real_env, fake, ledger_db,
                                                                                   monkeypatch):
    monkeypatch.setenv("REELCREW_SLOT_LIVE_SECONDS", "600")  # a round may take seconds on a loaded machine
    settings = load_settings(scenes=3, veo3_max_concurrent=1)
    store = service.open_store(settings)
    first, second = service.plan(settings, ["how tea is made", "why the sky is blue"], store)
    one, two = Tasks(settings, store), Tasks(settings, store)  # two workers on one ledger
    try:
        asking = one.run(Step(task="write", production_id=first.id, until="clips"))
        asking = [(one, follow) for step in asking for follow in one.run(step)]  # clip 1 at Veo, 2 and 3 in line
        assert fake.accepted == 1
        later = two.run(Step(task="write", production_id=second.id, until="clips"))  # its prompts come later
        assert [s.task for s in later] == ["submit_clip"] * 3
        left = _rounds([(two, step) for step in later] + asking, first=two)
        assert left == []
        assert _submit_order(store, [first, second]) == [first.id] * 3 + [second.id] * 3
        assert all(c.status == ClipStatus.done for p in (first, second) for c in store.production_clips(p.id))
        assert fake.max_in_flight <= 1
    finally:
        one.close()
        two.close()
        store.close()


@pytest.mark.slow
def test_a_waiter_that_stops_asking_does_not_block_the_others(real_env, fake, ledger_db, monkeypatch):
    monkeypatch.setenv("REELCREW_SLOT_LIVE_SECONDS", "600")  # a waiter keeps its place for long: only the
    settings = load_settings(scenes=2, veo3_max_concurrent=1)  # time since its last ask makes it drop out
    store = service.open_store(settings)
    first, second = service.plan(settings, ["how tea is made", "why the sky is blue"], store)
    one, two = Tasks(settings, store), Tasks(settings, store)
    try:
        steps = one.run(Step(task="write", production_id=first.id, until="clips"))
        follow, lost = [one.run(step)[0] for step in steps]  # clip 1 at Veo; clip 2 asked, waits, then its worker
        assert (follow.task, lost.task, lost.clip_index) == ("follow_clip", "submit_clip", 2)  # dies: never again
        later = two.run(Step(task="write", production_id=second.id, until="clips"))
        assert _rounds([(one, follow)]) == []  # clip 1 is made: a slot is free, clip 2 of the first is next in line
        waiting = [(two, again) for step in later for again in two.run(step)]
        assert [s.task for _, s in waiting] == ["submit_clip"] * 2 and fake.accepted == 1  # they wait behind it
        lost_key = lost.clip_key
        assert lost_key is not None
        store.update_clip(lost_key, wants_slot_at=time.time() - 601)  # no ask from it for longer than its place
        assert _rounds(waiting) == []  # lasts: the line moves on without it
        assert _submit_order(store, [first, second]) == [first.id] + [second.id] * 2
        assert store.clip(lost_key).status == ClipStatus.pending and not store.receipts(lost_key)
        assert _rounds([(one, lost)]) == []  # its step sent again (the reconciler): it takes the free slot
        assert _submit_order(store, [first, second]) == [first.id] + [second.id] * 2 + [first.id]
    finally:
        one.close()
        two.close()
        store.close()
