"""The embedded runner behind `reelcrew serve`: production jobs on a small thread pool, never in a request.

A request only records what was asked (the ledger's `web_requests` row: the create options, who asked, who
approved) and hands a job to the pool. A job is the service layer's verbs in order: the writers up to the
prompts; then either the hold (`awaiting_approval` with the estimate) or the clips and the final. One job per
production at a time. Everything a job does is in the ledger, so a restarted server finds the unfinished
productions there (`recover`) and starts them again: receipts re-attached, nothing paid twice."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reelcrew import service
from reelcrew.errors import BudgetError, InputError, ReelcrewError
from reelcrew.models import TERMINAL_STATUSES, ClipStatus, Production, ProductionStatus, PromptList
from reelcrew.pipeline import Progress
from reelcrew.results import ApprovalPolicy, Estimate
from reelcrew.settings import Settings, load_settings
from reelcrew.store import Store, utc_day

log = logging.getLogger("reelcrew.web")
WRITERS_ONLY = ("script", "seo", "prompts")
QUIET_CLIP_STATES = {ClipStatus.done}  # the generator logs these itself


class Busy(ReelcrewError):
    """A job for this production is running: the request would race it."""


@dataclass
class Studio:
    """What the web face shares between requests: the base settings, the ledger and the job pool."""

    base: Settings
    store: Store
    config: Path | None = None
    workers: int = 2
    _pool: ThreadPoolExecutor = field(init=False)
    _active: dict[str, Future] = field(default_factory=dict)
    _settings: dict[str, Settings] = field(default_factory=dict)
    _options: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="serve-job")

    # -- settings per production -------------------------------------------------------------
    def settings_for(self, options: dict[str, Any]) -> Settings:
        """The base settings with the request's options (mock, scenes, aspect, language, continuity) on top; built
        once per set of options (reading the environment and the YAML on every poll would cost more than the poll)."""
        key = json.dumps([options.get(k) for k in ("mock", "scenes", "aspect_ratio", "language", "continuity")])
        with self._lock:
            cached = self._settings.get(key)
        if cached is None:
            cached = self._load_settings(options)
            with self._lock:
                self._settings[key] = cached
        return cached

    def _load_settings(self, options: dict[str, Any]) -> Settings:
        overrides: dict[str, Any] = {"reelcrew_output_dir": self.base.reelcrew_output_dir,
                                     "scenes": options.get("scenes"), "aspect_ratio": options.get("aspect_ratio"),
                                     "language": options.get("language"), "continuity": options.get("continuity")}
        if options.get("mock"):
            overrides.update(reelcrew_llm="mock", veo3_mock_mode=True)
        return load_settings(self.config, **overrides)

    def options(self, pid: str) -> dict[str, Any]:
        """The options the production was created with (they never change: kept after the first read)."""
        with self._lock:
            known = self._options.get(pid)
        if known is not None:
            return dict(known)
        row = self.store.web_request(pid)
        if row is None:  # made by the CLI: shown and resumed with the server's own settings
            return {"mock": self.base.veo3_mock_mode, "until": "final"}
        with self._lock:
            self._options[pid] = json.loads(row["options"])
        return dict(self._options[pid])

    def production_settings(self, pid: str) -> Settings:
        return self.settings_for(self.options(pid))

    def estimate(self, pid: str) -> Estimate:
        """The service's estimate; on the mock (free) the clips and seconds it would make are counted too."""
        settings, prod = self.production_settings(pid), self._require(pid)
        estimate = service.estimate(settings, [prod], self.store)
        saved = self.store.stage(pid, "prompts")
        if estimate.clips or saved is None:
            return estimate
        done = {c.index for c in self.store.production_clips(pid) if c.status == ClipStatus.done}
        todo = [p for p in PromptList.model_validate_json(saved).prompts if p.index not in done]
        return estimate.model_copy(update={"clips": len(todo), "seconds": float(sum(p.duration for p in todo))})

    # -- the pool -------------------------------------------------------------------------------
    def busy(self, pid: str) -> bool:
        with self._lock:
            job = self._active.get(pid)
            return job is not None and not job.done()

    def submit(self, pid: str, what: str, job: Callable[[], None]) -> None:
        """Run `job` for the production on the pool; Busy when one is running for it already."""
        with self._lock:
            current = self._active.get(pid)
            if current is not None and not current.done():
                raise Busy(f"production {pid} is being worked on", "wait for its current step to finish")
            self._active[pid] = self._pool.submit(self._guarded, pid, what, job)

    def _guarded(self, pid: str, what: str, job: Callable[[], None]) -> None:
        try:
            job()
        except BudgetError as exc:  # the pipeline parked it as awaiting_approval (over budget_usd)
            self.store.log("awaiting_approval", exc.problem, pid, stage="clips")
        except ReelcrewError as exc:
            log.warning("%s of %s stopped: %s", what, pid, exc)
            self.store.set_production_status(pid, ProductionStatus.failed, None, f"{exc.problem} (fix: {exc.fix})")
            self.store.log("failed", exc.problem, pid)
        except Exception as exc:  # a bug must not kill the pool's thread silently
            log.exception("%s of %s crashed", what, pid)
            self.store.set_production_status(pid, ProductionStatus.failed, None, f"internal error: {exc}")
            self.store.log("failed", f"internal error: {exc}", pid)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until every job submitted so far has finished (tests, the benchmark and shutdown)."""
        with self._lock:
            jobs = list(self._active.values())
        for job in jobs:
            job.result(timeout=timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- jobs ----------------------------------------------------------------------------------
    def progress(self) -> Progress:
        """Progress hooks that become ledger events, so every listener sees them (SSE reads the events)."""
        def stage(pid: str, name: str) -> None:
            if not name.endswith("(saved)") and name in WRITERS_ONLY:
                self.store.log("progress", f"{name} started", pid, stage=name)

        def clip(changed: Any) -> None:
            if changed.status not in QUIET_CLIP_STATES:
                self.store.log(f"clip_{changed.status.value}", changed.error or changed.status.value,
                               changed.production_id, changed.index, "clips")

        return Progress(stage=stage, clip=clip)

    def start(self, pid: str) -> None:
        """Writers up to the prompts, then the hold or the clips (a created, resumed or restarted production)."""
        self.submit(pid, "start", lambda: self._start(pid))

    def _start(self, pid: str) -> None:
        options, settings = self.options(pid), self.production_settings(pid)
        prod = self._live(pid)
        if prod is None:
            return
        until = options.get("until", "final")
        if self.base.reelcrew_broker:  # the workers write it; a paid one waits for its yes before anything runs
            estimate = service.estimate(settings, [prod], self.store)
            row = self.store.web_request(pid) or {}
            if (until not in WRITERS_ONLY and not row.get("approved_by") and not options.get("auto_approve")
                    and (options.get("hold") or estimate.usd)):
                self.hold(pid, estimate)
                return
            self._go(pid, settings, options, until)
            return
        first = until if until in WRITERS_ONLY else "prompts"
        service.run(settings, [prod], first, self.progress(), store=self.store)
        prod = self._live(pid)
        if prod is None or until in WRITERS_ONLY or prod.status not in (ProductionStatus.paused,
                                                                         ProductionStatus.running):
            return
        row = self.store.web_request(pid) or {}
        estimate = self.estimate(pid)
        if not row.get("approved_by") and not options.get("auto_approve") and (options.get("hold") or estimate.usd):
            self.hold(pid, estimate)
            return
        self._go(pid, settings, options, until)

    def hold(self, pid: str, estimate: Estimate) -> None:
        message = (f"estimate ${estimate.usd:.2f} for {estimate.clips} clip(s), {estimate.seconds:.0f} s of video: "
                   "approve to start the clips")
        self.store.set_production_status(pid, ProductionStatus.awaiting_approval, "clips", message)
        self.store.log("awaiting_approval", message, pid, stage="clips")

    def _go(self, pid: str, settings: Settings, options: dict[str, Any], until: str,
            retry_clips: set[tuple[str, int]] | None = None) -> None:
        prod = self._live(pid)
        if prod is None:
            return
        if self.base.reelcrew_broker:  # `reelcrew serve` with a broker enqueues; the workers run it
            from reelcrew.service.queue import enqueue_production

            enqueue_production(settings, self.store, pid, until, retry_clips)
            return
        policy = self._policy(pid, options)
        service.run(settings, [prod], until, self.progress(), policy, self.store, retry_clips)

    def _policy(self, pid: str, options: dict[str, Any]) -> ApprovalPolicy:
        """`budget_usd`, capped for an auto-approved production by what its creator's token may still spend today:
        `auto_approve` must not slip past a token's daily budget (a person's approval is checked by the route)."""
        policy = ApprovalPolicy(yes=True, budget_usd=options.get("budget_usd"), budget_name="budget_usd",
                                budget_fix="raise budget_usd, or approve the production")
        row = self.store.web_request(pid) or {}
        creator = row.get("created_by")
        if row.get("approved_by") or not creator:
            return policy
        cap = next((t["daily_budget_usd"] for t in self.store.token_rows() if t["name"] == creator), None)
        if cap is None:
            return policy
        spent = self.store.spent_by_creator(creator, utc_day())
        left = max(cap - spent, 0.0)
        if policy.budget_usd is not None and policy.budget_usd <= left:
            return policy
        return policy.model_copy(update={
            "budget_usd": left, "budget_name": f"the daily budget of token {creator!r} (${cap:.2f}, ${spent:.2f} "
                                                "spent today), leaving",
            "budget_fix": "ask an admin to approve it, or wait for the next UTC day"})

    def approve(self, pid: str, actor: str) -> Estimate:
        """The clips may start: recorded with the approver's name, then the job goes on."""
        prod = self._require(pid)
        if prod.status != ProductionStatus.awaiting_approval:
            raise Busy(f"production {pid} is {prod.status.value}, not awaiting_approval",
                       "approve a production while it waits for approval")
        settings = self.production_settings(pid)
        estimate = self.estimate(pid)
        self.store.set_web_approval(pid, actor)
        self.store.log_action("approved", f"${estimate.usd:.2f} for {estimate.clips} clip(s) approved by {actor}",
                              actor, pid, stage="clips")
        self.store.set_production_status(pid, ProductionStatus.queued)
        options = self.options(pid)
        self.submit(pid, "approved run", lambda: self._go(pid, settings, options, options.get("until", "final")))
        return estimate

    def retry(self, pid: str, clip: int, prompt: str | None, actor: str) -> None:
        self._require(pid)
        if self.busy(pid):
            raise Busy(f"production {pid} is being worked on", "retry once its current step has finished")
        settings, options = self.production_settings(pid), self.options(pid)
        _, targets = service.prepare_retry(settings, pid, clip, prompt, self.store)
        self.store.log_action("retry", f"clip {clip} retried by {actor}" + (" with a new prompt" if prompt else ""),
                              actor, pid, clip, "clips")
        self.submit(pid, "retry", lambda: self._go(pid, settings, options, "final", targets))

    def resume(self, pid: str, actor: str) -> None:
        prod = self._require(pid)
        if prod.status in (ProductionStatus.done, ProductionStatus.incomplete, ProductionStatus.cancelled,
                           ProductionStatus.awaiting_approval):
            raise Busy(f"production {pid} is {prod.status.value}: nothing to resume",
                       "approve a production that awaits approval; retry a missing clip of an incomplete one; "
                       "a done one can be re-cut (assemble)")
        self.store.log_action("resumed", f"resumed by {actor}", actor, pid)
        self.start(pid)

    def assemble(self, pid: str, actor: str, overrides: dict[str, Any]) -> None:
        """A re-cut from the clips made: refused while a clip is still on its way (that would be new spend)."""
        prod = self._require(pid)
        clips = self.store.production_clips(pid)
        waiting = [c.index for c in clips if c.status not in (ClipStatus.done, ClipStatus.filtered,
                                                              ClipStatus.failed, ClipStatus.ambiguous)]
        if not clips or waiting:
            raise Busy(f"production {pid} has clips still to make ({waiting or 'none made yet'})",
                       "resume or approve it first; a re-cut uses only clips already made")
        settings = self.production_settings(pid).model_copy(update=overrides)
        self.store.log_action("assemble", f"re-cut asked by {actor}" + (f" ({', '.join(overrides)})"
                                                                        if overrides else ""), actor, pid, None,
                              "final")
        self.store.delete_stage(pid, "final")
        self.submit(pid, "assemble", lambda: self._go(pid, settings, self.options(pid), "final"))
        del prod

    def cancel(self, pid: str, actor: str) -> bool:
        """False when it was already cancelled; a done or incomplete production refuses (InputError)."""
        if self._require(pid).status == ProductionStatus.cancelled:
            return False
        service.cancel(self.production_settings(pid), pid, self.store, actor=actor)
        return True

    def recover(self) -> list[str]:
        """After a restart: start again every API production that had not ended and is not waiting for a yes."""
        started = []
        for row in self.store.web_requests():
            prod = self.store.production(row["production_id"])
            if prod is None or prod.status in TERMINAL_STATUSES or prod.status == ProductionStatus.awaiting_approval:
                continue
            self.store.log("resumed", "server restarted: resuming", prod.id)
            self.start(prod.id)
            started.append(prod.id)
        return started

    # -- helpers --------------------------------------------------------------------------------
    def _require(self, pid: str) -> Production:
        return service.require_production(self.store, pid)

    def _live(self, pid: str) -> Production | None:
        """The production, unless it was cancelled."""
        prod = self.store.production(pid)
        if prod is None or prod.status == ProductionStatus.cancelled:
            return None
        return prod


def plan_request(studio: Studio, topics: list[str], options: dict[str, Any], actor: str
                 ) -> tuple[list[Production], set[str]]:
    """Record the productions for a create request; returns them and the ids that are new. Settings are checked
    first, so a bad option leaves nothing behind."""
    settings = studio.settings_for(options)
    before = {p.id for p in studio.store.all_productions()}
    if len(topics) != len(set(topics)):
        raise InputError("the same topic is given twice", "give each topic once")
    prods = service.plan(settings, topics, studio.store)
    new = {p.id for p in prods} - before
    for prod in prods:
        studio.store.save_web_request(prod.id, json.dumps(options, sort_keys=True), actor)
        if prod.id in new:
            studio.store.log_action("created", f"created by {actor}: {prod.topic}", actor, prod.id)
    return prods, new
