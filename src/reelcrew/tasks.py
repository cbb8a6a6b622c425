"""The pipeline as tasks of ids: the bodies every runner calls (the local runner; Celery calls the same ones).

A body takes a `Step` (ids, no objects), does one piece of one production's work and RETURNS its follow-up steps
instead of calling them; the runner enqueues those (a countdown is a delay in the runner, never a sleep here).
Every body reads the ledger first, so a repeated or redelivered step continues where the work is, or does nothing.
`Tasks(settings, store)` is all a fresh process needs: each production runs with its recorded identity
(`identity.settings_for`), whatever today's settings say.

- `write`       the writers' stages still missing (script, seo, prompts; saved ones are reused), the texts'
                pre-flight, then one `submit_clip` per clip (only the first when the production's clips go in
                order), or nothing: stopped by `until`, held for approval (`hold`), failed, paused or cancelled.
- `submit_clip` claim + ONE paid submit; it ends when the receipt is committed → `follow_clip` (its first look
                at once, then one per POLLING_INTERVAL), carrying the claim's owner. A clip already at Veo →
                `follow_clip` now. A wait (VEO3_MAX_CONCURRENT in flight, clips ahead in the ledger's line for
                slots, the breaker, a quota 429, a back-off, another claim) → itself again with that countdown.
                A settled clip (done, perhaps by another production sharing it) → its file is copied to this
                scene, then `render` when every clip of the production rests. A parked clip (budget, paused day,
                cancelled) → the same, once the ledger said so.
- `follow_clip` ONE poll. Done → download + validate → `render` when every clip is settled (in order: the
                next clip's `submit_clip`); still running → itself after POLLING_INTERVAL; a failed generation
                that may try again → `submit_clip`. Never resubmits; never sleeps on the operation.
- `render`      once every clip is settled: the clips' verdict (paused/failed), the final, `done`/`incomplete`.
                A production rendered already (or by this context) is left alone; `recut` renders again.

Claims: `write` and `render` hold the production with the context's owner (`Tasks.owner`, renewed by its
heartbeat); a production another live process holds is left alone. A clip is claimed per step; `follow_clip`
carries the owner its `submit_clip` claimed with (`Step.owner`), so a duplicate chain finds the clip held and
waits until it is settled, then does nothing. Receipts, the breaker, the budget and the rate gate are the
generator's (reelcrew.video.generator), unchanged.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Literal

from pydantic import BaseModel

from reelcrew import continuity
from reelcrew.errors import ConfigError, ReelcrewError
from reelcrew.files import new_owner
from reelcrew.identity import identity_fields, settings_for
from reelcrew.leases import Heartbeat
from reelcrew.models import ClipStatus, Production, ProductionStatus, PromptList, Script, SeoPackage
from reelcrew.pipeline import PRODUCTION_LEASE, SETTLED_CLIPS, STAGES, Pipeline, Progress, until_note
from reelcrew.settings import Settings
from reelcrew.storage import StorageError
from reelcrew.store import Store
from reelcrew.video.continuity_refs import check_prompt, clip_options, in_order
from reelcrew.video.generator import Budget, ClipGenerator, ClipJob
from reelcrew.writer_quota import WritersPaused

log = logging.getLogger("reelcrew.tasks")
TaskName = Literal["write", "submit_clip", "follow_clip", "render"]
QUEUES: dict[str, str] = {"write": "writers", "submit_clip": "clips", "follow_clip": "clips", "render": "render"}
# nothing more for this run to do with the clip: settled, or parked (a budget, a paused day: `resume` continues)
RESTING = (*SETTLED_CLIPS, ClipStatus.paused)


class Step(BaseModel):
    """One piece of work, by ids: what a runner enqueues (a Celery message carries exactly this)."""

    task: TaskName
    production_id: str
    clip_key: str | None = None
    clip_index: int | None = None  # the scene the clip is for (a key can serve two scenes): its file's name
    countdown: float = 0.0  # seconds to wait before running it
    until: str = "final"  # the stage the run stops after (`--until`)
    hold: bool = False  # write: stop after the writers (the batch is asked once before any clip starts)
    retry: list[int] = []  # write: scenes to make again (`reelcrew retry`)
    recut: bool = False  # render: cut again even where a final was rendered (`reelcrew assemble`)
    owner: str | None = None  # follow_clip: the clip claim its submit_clip took
    attempt: int = 0  # follow_clip: polls in a row that failed (the back-off grows with it)

    @property
    def queue(self) -> str:
        return QUEUES[self.task]

    def again(self, countdown: float, **changes) -> Step:
        return self.model_copy(update={"countdown": countdown, **changes})


class StepGenerator(ClipGenerator):
    """The clip generator inside one step: a wait before the next submit attempt is recorded, not slept."""

    def _wait(self, seconds: float) -> None:
        self._current.wait = seconds

    def waited(self) -> float:
        return float(getattr(self._current, "wait", 0.0) or 0.0)

    def begin(self, job: ClipJob) -> None:
        self._current.job, self._current.wait = job, 0.0


class Tasks:
    """The task bodies with what they share in one process: the ledger, the production claims, the generators."""

    def __init__(self, settings: Settings, store: Store, progress: Progress | None = None,
                 budget_usd: float | None = None, owner: str | None = None):
        self.base, self.store = settings, store
        self.progress = progress or Progress()
        self.budget = Budget(run_usd=budget_usd, daily_usd=settings.reelcrew_daily_budget_usd)
        self.owner = owner or new_owner()  # this context's claim on the productions it writes and renders
        self.heartbeat = Heartbeat(store, PRODUCTION_LEASE)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._pipelines: dict[str, Pipeline] = {}
        self._generators: dict[str, StepGenerator] = {}
        self._render_locks: dict[str, threading.Lock] = {}
        self._check_locks: dict[str, threading.Lock] = {}  # clip key → one check of its file at a time
        self._rendered: set[str] = set()
        self._chains: dict[str, str] = {}  # clip key → the owner whose follow steps hold it (released on close)

    # -- what a step needs ------------------------------------------------------------------------
    def settings(self, pid: str) -> Settings:
        return self.pipeline(pid).settings

    def pipeline(self, pid: str) -> Pipeline:
        """One Pipeline per production (its writers' quota records this production's tokens)."""
        with self._lock:
            if pid not in self._pipelines:
                own = settings_for(self.base, self._production(pid))
                self._pipelines[pid] = Pipeline(own, self.store, self.progress, self.budget.run_usd)
            return self._pipelines[pid]

    def generator(self, pid: str) -> StepGenerator:
        """The clip generator of the production's identity (backend, rate gate), built on first use."""
        from reelcrew.video.backends import LazyBackend, make_backend
        from reelcrew.video.quota import RateGate
        from reelcrew.video.registry import backend_spec

        own = self.settings(pid)
        key = json.dumps(identity_fields(own), sort_keys=True)
        with self._lock:
            if key not in self._generators:
                paid = backend_spec(own).paid
                gate = (RateGate(self.store, own.veo3_rpm, own.veo3_rpd, own.veo3_rate_window_seconds,
                                 broker=own.reelcrew_broker) if paid else None)  # one rate for every worker
                backend = LazyBackend(lambda: make_backend(own), backend_spec(own).name)
                generator = StepGenerator(own, self.store, backend, gate, self.budget, on_change=self.progress.clip)
                if self.stopping.is_set():
                    generator.stop()
                self._generators[key] = generator
            return self._generators[key]

    def _production(self, pid: str) -> Production:
        prod = self.store.production(pid)
        if prod is None:
            raise ReelcrewError(f"production {pid} is not in the ledger", "plan it first (`reelcrew run`)")
        return prod

    def _live(self, pid: str) -> Production | None:
        prod = self.store.production(pid)
        return None if prod is None or prod.status == ProductionStatus.cancelled else prod

    def hold(self, pid: str) -> bool:
        """Hold the production with this context's owner: True when held (already, or claimed now)."""
        prod = self._production(pid)
        if prod.status == ProductionStatus.running and self.store.production_owner(pid) == self.owner:
            return True
        pipeline = self.pipeline(pid)
        claim = self.store.claim_production(pid, self.owner, PRODUCTION_LEASE, pipeline.out.resolve() / pid)
        if claim.granted:
            self.heartbeat.hold(self.owner)
        return claim.granted

    def stop(self) -> None:
        """Steps running now finish their current piece (never mid-receipt); no new submit is sent."""
        self.stopping.set()
        with self._lock:
            generators = list(self._generators.values())
        for generator in generators:
            generator.stop()

    def close(self) -> None:
        """The end of this context (a run over, or stopped): clips its follow chains still hold are released with
        their receipts (`resume` re-attaches them, never resubmits); the heartbeats stop."""
        with self._lock:
            chains = list(self._chains.items())
            self._chains.clear()
        for key, owner in chains:
            if self.store.clip(key).status in (ClipStatus.submitted, ClipStatus.downloading):
                self.store.release_clip(key, owner, ClipStatus.submitted)
        self.heartbeat.stop()
        with self._lock:
            generators = list(self._generators.values())
        for generator in generators:
            generator.heartbeat.stop()

    # -- dispatch -----------------------------------------------------------------------------------
    def run(self, step: Step) -> list[Step]:
        """Run one step; returns its follow-ups. ConfigError and StorageError stop the batch (raised); any other
        failure is this production's (or this clip's) and is recorded, never lost."""
        body = {"write": self.write, "submit_clip": self.submit_clip, "follow_clip": self.follow_clip,
                "render": self.render}[step.task]
        try:
            return body(step)
        except (ConfigError, StorageError):
            raise
        except Exception as exc:
            log.exception("%s of %s crashed", step.task, step.production_id)
            if step.clip_key is not None:
                self.store.release_clip(step.clip_key, None, ClipStatus.failed, error=f"internal error: {exc}")
                return self._after_clip(step)
            self.store.set_production_status(step.production_id, ProductionStatus.failed, None,
                                             f"internal error: {exc}")
            self.store.log("failed", f"internal error: {exc}", step.production_id)
            return []

    # -- write ----------------------------------------------------------------------------------------
    def write(self, step: Step) -> list[Step]:
        pid = step.production_id
        prod = self._live(pid)
        if prod is None or self.stopping.is_set() or not self.hold(pid):
            return []  # cancelled, stopping, or another live process works on it
        prod = self._production(pid)
        pipeline, until = self.pipeline(pid), step.until
        try:
            written = pipeline.write(prod, "prompts" if until in ("clips", "final") else until)
        except ReelcrewError as exc:
            if isinstance(exc, ConfigError | StorageError):  # the same for every production: stop the batch
                raise
            stage = next((st for st in STAGES if self.store.stage(pid, st) is None), "script")
            status = ProductionStatus.paused if isinstance(exc, WritersPaused) else ProductionStatus.failed
            self.store.set_production_status(pid, status, stage, str(exc))
            self.store.log("failed", str(exc), pid, stage=stage)
            return []
        if until not in ("clips", "final"):
            if self._running(pid):  # a deliberate stop: resumable, and it says where it stopped
                self.store.set_production_status(pid, ProductionStatus.paused, until, until_note(until))
            return []
        if self._live(pid) is None:  # cancelled while its writers ran
            return []
        pipeline._check_texts([prod], {pid: written})  # before the first submit (ConfigError: stop the batch)
        if step.hold:
            return []
        return self.clip_steps(pid, until, set(step.retry), step.recut)

    def clip_steps(self, pid: str, until: str = "final", retry: set[int] | None = None, recut: bool = False
                   ) -> list[Step]:
        """The production's clips recorded (keys and prompts in the manifest before any submit) as steps."""
        from reelcrew.video.registry import backend_name, backend_spec

        pipeline, own = self.pipeline(pid), self.settings(pid)
        saved = self.store.stage(pid, "prompts")
        if saved is None:
            return []
        steps = []
        continuity.check(own)  # a mode not built, or refused by the backend and model: before any spend
        prompts = PromptList.model_validate_json(saved).prompts
        rehearsal = not backend_spec(own).paid
        options = clip_options(own, self.store, pid, prompts, own.veo3_model, rehearsal)  # continuity inputs too
        for prompt in prompts:
            prompt.check_against(own.veo3_model, backend_name(own))
            check_prompt(own, prompt)  # e.g. a 4 s clip with reference images: refused before any submit
            clip = ((own.continuity in continuity.IN_ORDER and continuity.kept_link(self.store, pid, prompt))
                    or self.store.ensure_clip(pid, prompt, own.veo3_model, rehearsal=rehearsal,
                                              options=options[prompt.index]))
            if prompt.index in (retry or set()):
                self.store.reset_clip(clip.key)  # a failed, filtered or ambiguous clip goes again (a done one stays)
            if clip.status == ClipStatus.paused and not clip.operation_name:
                # parked by an earlier run (a budget, a paused day, a cancel): this run asks the ledger again, and
                # until its step has, the clip is not at rest (no render starts without it)
                self.store.update_clip(clip.key, status=ClipStatus.pending)
            steps.append(Step(task="submit_clip", production_id=pid, clip_key=clip.key, clip_index=prompt.index,
                              until=until, recut=recut, retry=sorted(retry or ())))
        prod = self._production(pid)
        self.progress.stage(pid, "clips")
        self.store.log("stage", "clips", pid, stage="clips")
        pipeline.write_manifest(prod)  # keys and prompts on disk before the first submit: `restore` replays it
        if not steps:
            return [Step(task="render", production_id=pid, until=until, recut=recut)]
        return steps[:1] if in_order(own) else steps

    # -- clips ----------------------------------------------------------------------------------------
    def _job(self, step: Step, owner: str | None) -> ClipJob:
        assert step.clip_key is not None and step.clip_index is not None  # clip steps always carry both
        folder = self.pipeline(step.production_id).folder(step.production_id)
        dest = folder / "clips" / f"clip-{step.clip_index:02d}.mp4"
        return ClipJob(step.clip_key, dest, owner=owner or new_owner())

    def submit_clip(self, step: Step) -> list[Step]:
        step = self._continued(step)
        generator = self.generator(step.production_id)
        job = self._job(step, None)
        generator.begin(job)
        resting = self._resting(generator, job, step)
        if resting is not None:
            return resting
        if self.stopping.is_set():
            return []
        clip = self.store.clip(job.key)
        # the ledger's line decides the turn: clips whose prompts were ready first (their final too) go first
        mode, wait = generator._claim(clip, job.owner)
        if mode == "settled":
            return [step.again(0.0)]  # settled by another claim meanwhile: the next look reuses it
        if mode == "attach":
            self._chain(job)
            return [step.again(0.0, task="follow_clip", owner=job.owner, attempt=0)]
        if mode == "paused":
            generator._changed(job.key)
            return self._after_clip(step)
        if mode == "wait":
            return [step.again(wait)]
        generator.heartbeat.hold(job.owner)
        try:
            sent = generator._submit(job)
        finally:
            generator.heartbeat.drop(job.owner)
        if sent:  # the receipt is committed: this step is over. The first look right away (as the looping
            # generator does: a fast operation is not kept waiting), then one per POLLING_INTERVAL
            self._chain(job)
            return [step.again(0.0, task="follow_clip", owner=job.owner, attempt=0)]
        if self.store.clip(job.key).status in RESTING:
            generator._changed(job.key)
            return self._after_clip(step)
        return [step.again(generator.waited())]

    def _continued(self, step: Step) -> Step:
        """The step for the clip its scene is made with in its production's continuity mode (`last_frame`: the
        request with the previous good clip's last frame, reelcrew.continuity); the same step otherwise."""
        pid = step.production_id
        if step.clip_key is None or step.clip_index is None or self.settings(pid).continuity == "none":
            return step
        key = continuity.chain(self.settings(pid), self.store, self.pipeline(pid).folder(pid), pid, step.clip_key,
                               step.clip_index)
        if key != step.clip_key:
            self.pipeline(pid).write_manifest(self._production(pid))  # the scene's new key on disk before its submit
        return step if key == step.clip_key else step.model_copy(update={"clip_key": key})

    def follow_clip(self, step: Step) -> list[Step]:
        generator = self.generator(step.production_id)
        job = self._job(step, step.owner)
        generator.begin(job)
        resting = self._resting(generator, job, step)
        if resting is not None:
            return resting
        clip = self.store.clip(job.key)
        if not clip.operation_name:  # released for a new attempt (a failed generation is not charged)
            return [step.again(0.0, task="submit_clip", owner=None)]
        mode, wait = generator._claim(clip, job.owner)
        if mode == "wait":  # another claim follows it: look again later (it will be settled)
            return [step.again(wait)]
        if mode != "attach":
            return [step.again(0.0)]
        generator.heartbeat.hold(job.owner)
        try:
            verdict = generator.poll_once(job, step.attempt)
        finally:
            generator.heartbeat.drop(job.owner)
        interval = self.settings(step.production_id).polling_interval
        if verdict == "running":
            return [step.again(interval, attempt=0)]
        if verdict == "failing":
            return [step.again(min(max(interval, 0.05) * 2 ** (step.attempt + 1), 30), attempt=step.attempt + 1)]
        clip = self.store.clip(job.key)
        if clip.status == ClipStatus.pending:
            return [step.again(0.0, task="submit_clip", owner=None)]
        generator._changed(job.key)
        return self._after_clip(step)

    def _chain(self, job: ClipJob) -> None:
        with self._lock:
            self._chains[job.key] = job.owner

    def _resting(self, generator: StepGenerator, job: ClipJob, step: Step) -> list[Step] | None:
        """A clip with nothing left to do (its file copied to this scene when done): the follow-ups; else None."""
        if self._checked(generator, job) is False:
            return None  # its file vanished: fetched again (never a new payment)
        clip = self.store.clip(job.key)
        if clip.status in SETTLED_CLIPS:  # paused is not: this step asks the ledger again (`resume`, `retry`)
            generator._changed(job.key)
            return self._after_clip(step)
        return None

    def _checked(self, generator: StepGenerator, job: ClipJob) -> bool | None:
        """A done clip's file checked (here, else from the artifact store) by one step at a time: True usable,
        False demoted to be fetched again from its operation, None when the clip is not done (any more)."""
        with self._lock:
            lock = self._check_locks.setdefault(job.key, threading.Lock())
        with lock:
            clip = self.store.clip(job.key)
            if clip.status != ClipStatus.done:
                return None
            generator.begin(job)
            return generator._reuse(clip, job)

    def _unusable(self, step: Step) -> list[Step]:
        """Before a cut: the done clips whose file is neither here nor (checked) in the store, each sent to be
        fetched again from its operation (never paid again). A render can be queued by one clip's step while
        another clip's own step has not looked at its file yet: the cut must not leave that paid scene out."""
        pid = step.production_id
        generator, folder = self.generator(pid), self.pipeline(pid).folder(pid)
        steps = []
        for clip in self.store.production_clips(pid):
            job = ClipJob(clip.key, folder / "clips" / f"clip-{clip.index:02d}.mp4", owner=new_owner())
            if clip.status == ClipStatus.done and self._checked(generator, job) is False:
                steps.append(Step(task="submit_clip", production_id=pid, clip_key=clip.key, clip_index=clip.index,
                                  until=step.until, recut=step.recut))
        return steps

    def _after_clip(self, step: Step) -> list[Step]:
        """After a clip came to rest: `render` once every clip of the production rests (in order: the next clip)."""
        pid = step.production_id
        again = self._follow_up(step)
        if again is not None:
            return [again]
        clips = self.store.production_clips(pid)
        waiting = [c for c in clips if c.status not in RESTING]
        if in_order(self.settings(pid)) and waiting:
            nxt = waiting[0]
            if nxt.key == step.clip_key:
                return []
            return [Step(task="submit_clip", production_id=pid, clip_key=nxt.key, clip_index=nxt.index,
                         until=step.until, recut=step.recut)]
        return [] if waiting else [Step(task="render", production_id=pid, until=step.until, recut=step.recut)]

    def _follow_up(self, step: Step) -> Step | None:
        """The scene's next clip when the one that came to rest is due a follow-up (reelcrew.followups): a filtered
        prompt rewritten, or a flagged clip regenerated. None otherwise (a repeated step finds its key replaced in
        the prompts and does nothing)."""
        from reelcrew import followups

        pid = step.production_id
        if step.clip_key is None or self.stopping.is_set() or self._live(pid) is None:
            return None
        clip = self.store.clip(step.clip_key)
        flagged = self.settings(pid).qc == "regenerate" and (clip.qc or {}).get("ok") is False
        if clip.status != ClipStatus.filtered and not (clip.status == ClipStatus.done and flagged):
            return None  # the common case (a good clip) reads no stage and asks no writer
        out = followups.follow_ups(self.pipeline(pid), [(self._production(pid), self._job(step, None), clip)],
                                   {pid: self._written(pid)}, {(pid, index) for index in step.retry})
        if not out:
            return None
        return Step(task="submit_clip", production_id=pid, clip_key=out[0][2].key, clip_index=step.clip_index,
                    until=step.until, recut=step.recut, retry=step.retry)

    # -- render ---------------------------------------------------------------------------------------
    def render(self, step: Step) -> list[Step]:
        pid = step.production_id
        with self._lock:
            lock = self._render_locks.setdefault(pid, threading.Lock())
        with lock:
            if pid in self._rendered or self._live(pid) is None or self.stopping.is_set():
                return []
            pipeline = self.pipeline(pid)
            if step.until == "final" and not step.recut and pipeline._rendered(pid):
                return []  # rendered already (a repeated step)
            if step.until == "final":
                unusable = self._unusable(step)
                if unusable:
                    return unusable  # each returns `render` once its file is back
            # after the files' check: a clip another step is fetching again is on its way too
            if any(c.status not in RESTING for c in self.store.production_clips(pid)):
                return []  # a clip is still on its way: its own step returns `render` when it rests
            if not self.hold(pid):
                return []
            prod = self._production(pid)
            pipeline._settle_clips(prod)
            if step.until == "final":
                pipeline._final(prod, *self._written(pid))
            if self._running(pid):
                if step.until == "final":
                    self.store.set_production_status(pid, ProductionStatus.done)
                else:  # `--until clips`: resumable, and it says where it stopped
                    self.store.set_production_status(pid, ProductionStatus.paused, step.until, until_note(step.until))
            self._rendered.add(pid)
        return []

    def _written(self, pid: str) -> tuple[Script, SeoPackage | None, PromptList | None]:
        def load(stage: str, model):
            saved = self.store.stage(pid, stage)
            return None if saved is None else model.model_validate_json(saved)

        return load("script", Script), load("seo", SeoPackage), load("prompts", PromptList)

    def _running(self, pid: str) -> bool:
        current = self.store.production(pid)
        return current is not None and current.status == ProductionStatus.running

