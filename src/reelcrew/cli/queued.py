"""`reelcrew run` with a broker: approve here (the workers never ask), enqueue, then follow the ledger."""

from __future__ import annotations

import json

from reelcrew import service
from reelcrew.cli.app import err
from reelcrew.cli.render import Bars, approval_policy, print_summaries
from reelcrew.errors import InputError


def run_on_workers(settings, store, prods, until: str, *, as_json: bool, yes: bool, budget_usd: float | None,
                   detach: bool, retry_clips=None, recut: bool = False) -> int:
    """The approval step first (the estimate, --yes or the question, the budget cap), so nothing paid is queued
    unapproved; then each production's first task; then, unless `detach`, its progress until it settles."""
    from reelcrew.service import queue

    if until != "final" or retry_clips or recut:
        raise InputError("with a broker, `run` takes whole productions (no --until, retry or re-cut yet)",
                         "unset REELCREW_BROKER for this command to run it in this process")
    estimate = service.estimate(settings, prods, store)
    with Bars(False) as bars:
        service.approve(settings, estimate, approval_policy(bars, yes, budget_usd), store, tuple(p.id for p in prods))
    ids = queue.enqueue(settings, prods, store)
    if detach:
        if as_json:
            print(json.dumps({"queued": ids}))
        else:
            for pid in ids:
                print(pid)
            err.print(f"queued {len(ids)} production(s); `reelcrew status` follows them")
        return 0

    def changed(prod) -> None:
        done = sum(1 for c in store.production_clips(prod.id) if c.status.value == "done")
        err.print(f"[cyan]{prod.id}[/] {prod.status.value} ({done}/{prod.scenes} clips)")

    queue.follow(store, ids, changed)
    return print_summaries([service.summarize(settings, store, pid) for pid in ids], as_json)
