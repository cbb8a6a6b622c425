"""With a broker (`REELCREW_BROKER=redis://...`): put productions on the Celery queues, follow them in the ledger,
and re-queue dead letters. The CLI (`run`, `dead`) and the API (`serve`, `/api/dead`) call these.

Nothing here waits on Redis for state: the workers write the ledger, and following a batch reads the ledger."""

from __future__ import annotations

import time
from collections.abc import Callable

from reelcrew.errors import InputError
from reelcrew.models import Production, ProductionStatus
from reelcrew.settings import Settings
from reelcrew.store import Store

TERMINAL = {ProductionStatus.done, ProductionStatus.incomplete, ProductionStatus.failed, ProductionStatus.cancelled,
            ProductionStatus.awaiting_approval, ProductionStatus.paused}


def enqueue(settings: Settings, productions: list[Production], store: Store) -> list[str]:
    """Send each production's first task to the `writers` queue; returns their ids. The broker is checked
    first, so an unreachable one is a ConfigError (exit 2) before anything is marked queued."""
    from reelcrew.tasks import Step
    from reelcrew.workers import app_for, check_broker, send_steps

    app = app_for(settings)
    check_broker(app)
    ids = []
    for prod in productions:
        if prod.status in (ProductionStatus.done,) and store.stage(prod.id, "final"):
            continue
        store.set_production_status(prod.id, ProductionStatus.queued)  # followed until the workers settle it
        store.log("queued", f"sent to the workers on {_broker_name(settings)}", prod.id)
        # the writers first (idempotent: a written production goes straight on to its clips)
        send_steps(app, [Step(task="write", production_id=prod.id)], store=store)
        ids.append(prod.id)
    return ids


def enqueue_production(settings: Settings, store: Store, pid: str, until: str = "final",
                       retry: set[tuple[str, int]] | None = None, recut: bool = False) -> None:
    """One production's first step with the run's options (`reelcrew serve` with a broker: nothing runs in it)."""
    from reelcrew.tasks import Step
    from reelcrew.workers import app_for, check_broker, send_steps

    app = app_for(settings)
    check_broker(app)
    scenes = sorted(index for production_id, index in (retry or set()) if production_id == pid)
    store.set_production_status(pid, ProductionStatus.queued)
    store.log("queued", f"sent to the workers on {_broker_name(settings)}", pid)
    send_steps(app, [Step(task="write", production_id=pid, until=until, retry=scenes, recut=recut)], store=store)


def follow(store: Store, production_ids: list[str], on_change: Callable[[Production], None] | None = None,
           every: float = 1.0, until: Callable[[], bool] = lambda: False) -> list[Production]:
    """Read the ledger until every production has settled (done, incomplete, failed, cancelled, or stopped for
    approval, quota or budget); reports each change of status or stage through `on_change`."""
    seen: dict[str, tuple[str, int]] = {}
    while True:
        current = [store.production(pid) for pid in production_ids]
        prods = [p for p in current if p is not None]
        for prod in prods:
            marker = (prod.status.value, len([c for c in store.production_clips(prod.id) if c.status == "done"]))
            if seen.get(prod.id) != marker:
                seen[prod.id] = marker
                if on_change:
                    on_change(prod)
        if all(p.status in TERMINAL for p in prods) or until():
            return prods
        time.sleep(every)


def dead_letters(store: Store, include_retried: bool = False) -> list[dict]:
    return store.dead_letters(include_retried)


def retry_dead(settings: Settings, store: Store, letter_id: int, actor: str | None = None) -> dict:
    """Re-queue a dead letter's task with its ids (once: a second retry of the same letter is refused)."""
    from reelcrew.tasks import Step
    from reelcrew.workers import app_for, check_broker, send_steps

    app = app_for(settings)
    check_broker(app)
    letter = store.take_dead_letter(letter_id)
    if letter is None:
        raise InputError(f"no dead letter {letter_id} waiting to be retried",
                         "`reelcrew dead list` shows the ids of those not retried yet")
    pid = letter["production_id"]
    if pid and (prod := store.production(pid)) is not None and prod.status == ProductionStatus.failed:
        store.set_production_status(pid, ProductionStatus.queued)  # its task runs again: no longer failed
    send_steps(app, [Step.model_validate(letter["arguments"]["step"])], store=store)
    message = f"dead letter {letter_id} ({letter['task']}) re-queued"
    if actor:
        store.log_action("dead_retry", message, actor, pid)
    else:
        store.log("dead_retry", message, pid)
    return letter


def _broker_name(settings: Settings) -> str:
    from reelcrew.workers import masked

    return masked(settings.reelcrew_broker or "")
