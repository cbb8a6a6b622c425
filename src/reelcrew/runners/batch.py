"""A batch through the local runner: claims, approval, then every production's steps pipelined across the batch.

Approval before spend still holds. With `--yes` (within `--budget-usd`), on the mock, or for a run that makes
no clip, the batch is approved once up front on the estimate before writing (clips from the prompts where they
exist, else `scenes` clips of `clip_seconds`), and everything is pipelined: a production's clips start as soon as
its prompts exist, its render as soon as its clips rest. With the question (no `--yes`), or an estimate over
`--budget-usd`, the writers of the whole batch run first (in parallel), the exact estimate is asked about (or
refused) once for the batch, as before, and then the clips and renders are pipelined. The run budget is still
enforced per submit by the ledger (Budget in the claim)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from reelcrew.errors import BudgetError
from reelcrew.models import Production, ProductionStatus, PromptList
from reelcrew.pipeline import STAGES, Pipeline, Progress
from reelcrew.results import ApprovalPolicy, Estimate
from reelcrew.settings import Settings
from reelcrew.store import Store
from reelcrew.tasks import Step, Tasks

log = logging.getLogger("reelcrew.runners")
CLIP_STAGES = ("clips", "final")


@dataclass
class Group:
    """Productions that share one identity (model, resolution, mode): one approval, one generator."""

    pipeline: Pipeline
    productions: list[Production]
    mine: list[Production] = field(default_factory=list)
    approved: bool = False


def run_batch(base: Settings, store: Store, groups: list[tuple[Settings, list[Production]]], until: str,
              progress: Progress, policy: ApprovalPolicy, approve, retry_clips: set[tuple[str, int]] | None = None,
              recut: bool = False) -> dict[str, str]:
    """Run the groups' productions to `until` on one local runner; returns the notes of productions left alone.

    `approve(settings, ids)` gives a group's approval step (service.approve with the policy)."""
    from reelcrew.runners.local import LocalRunner

    tasks = Tasks(base, store, progress, policy.budget_usd)
    runner = LocalRunner(tasks, base)
    notes: dict[str, str] = {}
    batch = [Group(Pipeline(own, store, progress, policy.budget_usd, recut=recut,
                            approve=approve(own, tuple(p.id for p in prods))), prods) for own, prods in groups]
    retry = retry_clips or set()
    try:
        try:
            for group in batch:
                group.pipeline._preflight(group.productions, until)
                group.mine = group.pipeline._claim(group.productions, until, tasks.heartbeat, owner=tasks.owner)
                notes.update(group.pipeline._notes)
            mine = [p for g in batch for p in g.mine]
            progress.plan("stages", len(mine) * (STAGES.index(until) + 1))
            if until in CLIP_STAGES:
                progress.plan("clips", sum(p.scenes for p in mine))
            for group in batch:
                group.approved = _approved_up_front(group, until, policy, store)
            for group in batch:
                for prod in group.mine:
                    runner.enqueue(_first_step(prod.id, until, not group.approved, retry, recut))
            runner.wait()
            for group in [g for g in batch if not g.approved and g.mine]:
                _approve_written(group, until)  # BudgetError: awaiting_approval, nothing submitted
                for prod in group.mine:
                    runner.enqueue(_first_step(prod.id, until, False, retry, recut))
            runner.wait()
            for group in batch:
                _settle_leftovers(group, store)
        except Exception as exc:  # a config error (or a bug) ends the run: say so, never leave it `running`
            runner.stop()
            for group in batch:
                try:
                    group.pipeline._settle_after_error(group.mine, exc)
                except Exception as during:  # the first error is the one to report
                    log.warning("could not record why the run stopped: %s", during)
            raise
    finally:
        runner.close()
        tasks.close()
    return notes


def _first_step(pid: str, until: str, hold: bool, retry: set[tuple[str, int]], recut: bool) -> Step:
    return Step(task="write", production_id=pid, until=until, hold=hold, recut=recut,
                retry=sorted(i for p, i in retry if p == pid))


def _approved_up_front(group: Group, until: str, policy: ApprovalPolicy, store: Store) -> bool:
    """Approve now (True: pipelined) when no question is needed: no clip to pay for, or `--yes` within the cap."""
    from reelcrew.service.productions import estimate as estimate_batch
    from reelcrew.video.backends import make_backend
    from reelcrew.video.registry import backend_spec

    s = group.pipeline.settings
    if until not in CLIP_STAGES or not group.mine or not backend_spec(s).paid:
        return True
    estimate = estimate_batch(s, group.mine, store).model_copy(update={"writers_usd": 0.0})
    if not estimate.clips:
        return True
    make_backend(s)  # a missing key is an error (exit 2) before anyone approves a spend or a writer runs
    if not policy.yes or (policy.budget_usd is not None and estimate.usd > policy.budget_usd + 1e-9):
        return False
    group.pipeline.approve(estimate)
    return True


def _approve_written(group: Group, until: str) -> None:
    """The batch's writers are done: the exact estimate, asked once (or refused), as the stage-by-stage run did."""
    pipeline, store = group.pipeline, group.pipeline.store
    written = {}
    for prod in group.mine:
        current = store.production(prod.id)
        if current is None or current.status != ProductionStatus.running:
            continue
        prompts = store.stage(prod.id, "prompts")
        if prompts is not None:
            written[prod.id] = (None, None, PromptList.model_validate_json(prompts))  # only the prompts are priced
    jobs = pipeline._clip_jobs(group.mine, written, set())
    estimate: Estimate = pipeline.estimate(jobs)
    if not estimate.clips:
        return
    try:
        pipeline.approve(estimate)
    except BudgetError as exc:
        for pid in {p.id for p, _, _ in jobs}:
            store.set_production_status(pid, ProductionStatus.awaiting_approval, "clips", exc.problem)
        raise


def _settle_leftovers(group: Group, store: Store) -> None:
    """A production still `running` when no step is left (a clip left waiting: polling kept failing, a stop):
    paused with its clips' reason, like the stage-by-stage run."""
    for prod in group.mine:
        current = store.production(prod.id)
        if current is not None and current.status == ProductionStatus.running:
            group.pipeline._settle_clips(current)
            current = store.production(prod.id)
            if current is not None and current.status == ProductionStatus.running:
                store.set_production_status(prod.id, ProductionStatus.paused, "clips",
                                            "clips not finished. Run `reelcrew resume` to continue.")
