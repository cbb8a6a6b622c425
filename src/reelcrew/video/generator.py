"""One clip's life, two-phase: intent → submit → receipt → poll → download → validate → done.

The ledger row is the truth. The operation name is committed in its own transaction the
moment Veo returns it, before anything else; after a crash the row is re-attached by that
name and polled, never resubmitted. A clip whose key is done is reused, never paid again.

Each attempt at a clip is a claim with its own owner id (`host:pid:random`), so a sibling thread
never mistakes another's claim for its own; jobs that share a clip key (equal prompt and seed, in
one production or several) are generated once and the file is copied to every scene that wants it.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from tenacity import (
    Retrying,
    retry_if_not_exception_type,
    stop_before_delay,
    stop_when_event_set,
    wait_exponential,
    wait_random,
)

from reelcrew import artifacts, continuity
from reelcrew.errors import ConfigError
from reelcrew.files import new_owner, part_path, sha256_file
from reelcrew.leases import Heartbeat
from reelcrew.media import MediaError, decodes, probe
from reelcrew.models import ClipStatus, VideoClip, frame_size
from reelcrew.settings import Settings
from reelcrew.storage import StorageError, true_causes
from reelcrew.store import Spend, Store
from reelcrew.video import qc, samples
from reelcrew.video.backends import Outcome, VeoBackend
from reelcrew.video.continuity_refs import ClipInputs, billed_seconds, inputs_for, keep_new_part
from reelcrew.video.errors import (
    CredentialsRefused,
    OperationNotFound,
    OutcomeUnknown,
    QuotaExceeded,
    Rejected,
    Unavailable,
    VideoGone,
)
from reelcrew.video.quota import Breaker, QuotaPaused, RateGate, jitter, next_quota_reset
from reelcrew.video.registry import model_limits, sample_count
from reelcrew.video.retention import gone_message, on_gemini_api, past_retention

log = logging.getLogger("reelcrew.video")
FINAL = {ClipStatus.done, ClipStatus.filtered, ClipStatus.failed, ClipStatus.ambiguous}


@dataclass
class ClipJob:
    key: str
    dest: Path  # where the production wants the file
    retry_final: bool = False  # `reelcrew retry`: regenerate a failed/filtered/ambiguous clip
    owner: str = field(default_factory=new_owner)  # this job's claim on the clip: never shared with a sibling


@dataclass
class Budget:
    """Hard caps checked before every paid submit (in the same transaction that claims the slot)."""

    run_usd: float | None = None
    daily_usd: float | None = None
    run_started: float = field(default_factory=time.time)

    def refusal(self, spend: Spend, price: float) -> str | None:
        """Spent + promised (every clip between intent and cost row, priced like this one) + this clip ≤ cap."""
        promised = price * (spend.in_flight + 1)
        if self.run_usd is not None and spend.run + promised > self.run_usd + 1e-9:
            return f"run budget ${self.run_usd:.2f} reached (spent ${spend.run:.2f}, {spend.in_flight} in flight)"
        if self.daily_usd is not None and spend.today + promised > self.daily_usd + 1e-9:
            return (f"daily budget ${self.daily_usd:.2f} reached (spent ${spend.today:.2f} today, "
                    f"{spend.in_flight} in flight)")
        return None


class ClipGenerator:
    def __init__(self, settings: Settings, store: Store, backend: VeoBackend, rate_gate: RateGate | None,
                 budget: Budget | None = None, on_change: Callable[[VideoClip], None] | None = None):
        self.s, self.store, self.backend, self.rate = settings, store, backend, rate_gate
        self.breaker = Breaker(store, settings)
        self.budget = budget or Budget(daily_usd=settings.reelcrew_daily_budget_usd)
        self.on_change = on_change or (lambda clip: None)
        # a lease outlives the longest single step (a submit, a poll interval, one download attempt)
        self.lease_ttl = max(60.0, 3 * settings.polling_interval, settings.submit_timeout + 10,
                             settings.download_timeout + 10)
        self.tick = min(max(settings.polling_interval, 0.05), 0.5)  # how often a waiting clip looks again
        self.heartbeat = Heartbeat(store, self.lease_ttl)
        self._stop = threading.Event()
        self._current = threading.local()  # .job: the job this worker thread is generating

    # -- public --------------------------------------------------------------------------
    def run(self, jobs: list[ClipJob]) -> list[VideoClip]:
        """Generate every job; Ctrl-C or SIGTERM stops at once, leaving receipts for `reelcrew resume`.

        Jobs with the same clip key are one piece of work: generated (and paid) once, then the file is
        copied to each job's destination. The answer has one clip per job, in order."""
        if not jobs:
            return []
        groups: dict[str, list[ClipJob]] = {}
        for job in jobs:
            groups.setdefault(job.key, []).append(job)
        # Twice the Veo limit in threads, so downloads overlap the next submits; the ledger enforces the limit.
        workers = min(len(groups), 2 * self.s.veo3_max_concurrent)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clip")
        futures = {key: pool.submit(self._safe_group, group) for key, group in groups.items()}
        try:
            done = {key: f.result() for key, f in futures.items()}
            return [done[job.key][id(job)] for job in jobs]
        except BaseException:  # Ctrl-C, or a full or read-only disk (StorageError): the others stop too
            self.stop()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _safe_group(self, group: list[ClipJob]) -> dict[int, VideoClip]:
        """The first job generates the clip; the others reuse its file (no second claim, no second payment)."""
        first, *others = group
        if any(job.retry_final for job in group):
            first.retry_final = True
        results = {id(first): self._safe_one(first)}
        for job in others:
            clip = self.store.clip(job.key)
            if clip.status == ClipStatus.done and not self._reuse(clip, job):
                clip = self._safe_one(job)  # the file vanished meanwhile: fetch it again (never a new payment)
            else:
                clip = self._changed(job.key)
            results[id(job)] = clip
        return results

    def stop(self) -> None:
        """Workers finish their current step (never mid-receipt), release their leases and return."""
        self._stop.set()

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _wait(self, seconds: float) -> None:
        """The pause before a clip's next submit attempt (a quota 429, a failed attempt). Here a sleep; the task
        runners' generator (reelcrew.tasks) records it instead and returns a step with that countdown."""
        self._sleep(seconds)

    def _safe_one(self, job: ClipJob) -> VideoClip:
        try:
            return self.generate(job)
        except StorageError:  # a full or read-only disk: every clip would fail the same way; receipts are kept
            self.stop()
            raise
        except Exception as exc:  # never lose the batch to one clip
            log.exception("clip %s crashed", job.key)
            self.store.release_clip(job.key, job.owner, ClipStatus.failed, error=f"internal error: {exc}")
            return self._changed(job.key)
        finally:
            self.heartbeat.drop(job.owner)

    def _changed(self, key: str) -> VideoClip:
        clip = self.store.clip(key)
        self.on_change(clip)
        return clip

    # -- one clip ---------------------------------------------------------------------------
    def generate(self, job: ClipJob) -> VideoClip:
        self._current.job = job
        self._current.since = time.time()  # the clip's turn began: its wait before a submit counts from here
        if job.retry_final:
            self.store.reset_clip(job.key)
        while True:
            clip = self.store.clip(job.key)
            if self._stop.is_set():
                return clip
            if clip.status == ClipStatus.done and self._reuse(clip, job):
                return self._changed(job.key)
            if clip.status in FINAL - {ClipStatus.done}:
                return self._changed(job.key)
            mode, wait = self._claim(clip, job.owner)
            if mode == "attach":
                self.heartbeat.hold(job.owner)
                self._follow(job)
            elif mode == "submit":
                self.heartbeat.hold(job.owner)
                if not self._submit(job):
                    continue
                self._follow(job)
            elif mode == "paused":
                return self._changed(job.key)
            elif mode == "wait":
                self._sleep(wait)

    def _reuse(self, clip: VideoClip, job: ClipJob) -> bool:
        """A done clip is reused if its file (here, else in the artifact store) still checks out; else it is
        demoted for re-download."""
        source = self._stored_copy(clip, job.dest)
        if source is not None:
            clip.path = str(source)
            if Path(clip.path).resolve() != job.dest.resolve():
                job.dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = part_path(job.dest)
                with true_causes(job.dest, f"a copy of clip {clip.index}", Path(clip.path).stat().st_size):
                    try:
                        shutil.copyfile(clip.path, tmp)
                        os.replace(tmp, job.dest)
                    finally:
                        tmp.unlink(missing_ok=True)
            return True
        self.store.update_clip(clip.key, status=ClipStatus.submitted if clip.operation_name else ClipStatus.pending,
                               path=None, error="file missing: fetching it again")
        return False

    def _stored_copy(self, clip: VideoClip, dest: Path) -> Path | None:
        """A checked local copy of a done clip (reelcrew.artifacts); a store's object that fails its checksum is
        refused and logged, and the clip is downloaded again from its operation (never paid again)."""
        try:
            return artifacts.local_clip(self.s, clip, dest)
        except artifacts.ArtifactError as exc:
            if exc.cause in ("unreachable", "refused"):
                raise
            self.store.log("artifact_refused", exc.problem, clip.production_id, clip.index, "clips")
            return None

    def _claim(self, clip: VideoClip, owner: str) -> tuple[str, float]:
        """Ask the ledger what this claim does with the clip: submit, attach, wait, pause, or look again."""
        try:
            delay = self.breaker.before_submit(owner) if not clip.operation_name else 0.0
        except QuotaPaused as paused:
            self.store.release_clip(clip.key, None, ClipStatus.paused, error=str(paused))
            return "paused", 0
        price = self._price(clip)
        mode, wait = self.store.claim_clip(clip.key, owner, self.lease_ttl, self.s.veo3_max_concurrent, delay,
                                           lambda spend: self.budget.refusal(spend, price), self.budget.run_started,
                                           live_for=max(self.s.reelcrew_slot_live_seconds, 4 * self.tick))
        return mode, (self.tick if wait < 0 else wait)

    def _price(self, clip: VideoClip, samples: int | None = None) -> float:
        """What Veo charges for this clip when it succeeds (the registry's price: 0 on the mock): each sample is
        billed, so the budgets count VEO3_SAMPLE_COUNT of them until Veo says how many it made; an extension is
        priced at the seconds `extend_billing` says (continuity_refs.billed_seconds)."""
        count = sample_count(self.s) if samples is None else samples
        seconds = billed_seconds(self.s, clip.index, clip.prompt.duration)
        return count * seconds * self.s.price_per_second(clip.model, clip.prompt.resolution)

    def _inputs(self, clip: VideoClip) -> ClipInputs | None:
        """The clip's continuity inputs (reference images, the video an extension grows); ConfigError when they
        cannot be sent (a reference copy gone, a video the Gemini API deleted), raised before any submit."""
        return inputs_for(self.s, self.store, clip)

    def _submit(self, job: ClipJob) -> bool:
        """One paid request. True when a receipt was committed; False to go round again."""
        clip = self.store.clip(job.key)
        if self.rate is not None:  # None for the mock: it has no real quota (VEO3_MOCK_QUOTA_RATE rehearses 429s)
            self.rate.acquire()
        if self._stop.is_set():  # stopping: the intent is withdrawn, nothing was sent
            self._release(clip, ClipStatus.pending)
            return False
        try:
            inputs = self._inputs(clip)
        except ConfigError as exc:  # nothing was sent: the clip fails with what to do
            self._release(clip, ClipStatus.failed, error=f"{exc.problem}; fix: {exc.fix}")
            return False
        try:
            name = self.backend.submit(clip.prompt, clip.model, inputs)
        except QuotaExceeded as exc:
            self._attempt(clip, {"minute": "quota_minute", "day": "quota_day"}.get(exc.window, "quota_other"))
            return self._quota(clip, exc)
        except Rejected as exc:
            self._attempt(clip, "rejected")
            return self._rejected(clip, exc)
        except Unavailable as exc:  # nothing was created: retried with back-off
            self._attempt(clip, "unavailable")
            return self._failed_attempt(clip, exc.reason)
        except CredentialsRefused as exc:
            self._attempt(clip, "rejected")
            self._release(clip, ClipStatus.failed,
                          error=f"{exc.reason}; nothing was submitted. Fix the project's credentials (`gcloud auth "
                                f"application-default login` or GOOGLE_APPLICATION_CREDENTIALS), then run "
                                f"`reelcrew retry {clip.production_id} --clip {clip.index}`")
            return False
        except OutcomeUnknown as exc:
            ambiguous = self._ambiguous(clip, exc.reason)
            self._attempt(clip, "ambiguous")
            return ambiguous
        # the receipt (journal line and ledger row), in its own transaction, before anything else
        self.store.record_submit(clip.key, job.owner, name, clip.retries + 1, clip.possible_duplicate, self.lease_ttl)
        self._attempt(clip, "accepted", name)
        self.breaker.success()
        self.store.log("submitted", name, clip.production_id, clip.index, "clips", attempt=clip.retries + 1)
        return True

    def _attempt(self, clip: VideoClip, outcome: str, operation_name: str | None = None) -> None:
        """The submit's outcome for /metrics and `reelcrew slo` (after any receipt); the next wait starts now."""
        now = time.time()
        since = getattr(self._current, "since", now)
        self._current.since = now
        self.store.record_attempt(clip.key, clip.production_id, self.backend.name, outcome, now - since,
                                  operation_name)

    def _quota(self, clip: VideoClip, exc: QuotaExceeded) -> bool:
        """A per-day quota pauses every submit until midnight Pacific; a per-minute one is waited out."""
        if exc.window == "day":
            until = next_quota_reset(time.time(), self.s.veo3_quota_reset_interval)
            self.breaker.pause_day(until, "Veo answered 429 with a per-day QuotaFailure")
            self._release(clip, ClipStatus.pending)
            return False  # next claim sees the pause and parks the clip
        kind = "bare" if exc.window == "unknown" else exc.window
        self._release(clip, ClipStatus.pending, error=f"quota 429 ({kind}); waiting")
        self.store.log("quota", f"429 {kind}, retry in {exc.retry_after or 'back-off'}",
                       clip.production_id, clip.index, "clips")
        if exc.window == "minute" and exc.retry_after is not None:
            self._wait(jitter(exc.retry_after))
        else:
            self.breaker.failure("bare 429")
            self._wait(jitter(min(self.s.veo3_retry_wait_base, 60)))
        return False

    def _rejected(self, clip: VideoClip, exc: Rejected) -> bool:
        message = exc.message or str(exc)
        if exc.code == 404:
            message = f"model {clip.model} not found or retired ({message}); set VEO3_MODEL to a current model"
        self._release(clip, ClipStatus.failed, error=f"Veo refused the request ({exc.code} {exc.status}): {message}")
        return False

    def _failed_attempt(self, clip: VideoClip, reason: str) -> bool:
        retries = clip.retries + 1
        self.breaker.failure(reason)
        if retries > self.s.veo3_max_retries:
            self._release(clip, ClipStatus.failed, error=f"{reason} (gave up after {retries} attempts)",
                          retries=retries)
            return False
        self._release(clip, ClipStatus.pending, error=reason, retries=retries)
        self._wait(jitter(self.s.veo3_retry_wait_base * 2 ** (retries - 1)))
        return False

    def _ambiguous(self, clip: VideoClip, reason: str) -> bool:
        """Veo may have accepted (and will charge) this submit: record it, never resend it blindly."""
        self.store.record_ambiguous(
            clip.key, clip.retries + 1,
            f"{reason}. Veo may have accepted it; not resubmitted to avoid paying twice. "
            f"Run `reelcrew retry {clip.production_id} --clip {clip.index}` to submit again.")
        self.breaker.failure(reason)
        return False

    def _release(self, clip: VideoClip, status: ClipStatus, **values) -> None:
        owner = self._owner()
        self.store.release_clip(clip.key, owner, status, **values)
        self.heartbeat.drop(owner)

    def _owner(self) -> str:
        """The claim of the job this worker thread is generating (each thread works on one job at a time)."""
        return self._current.job.owner

    # -- after the receipt -------------------------------------------------------------------
    def _follow(self, job: ClipJob) -> None:
        """Poll until done, then download and validate; the operation is never resubmitted here."""
        clip = self.store.clip(job.key)
        if self._expired(clip):
            return
        deadline = (clip.submitted_at or time.time()) + self.s.operation_timeout
        outcome = self._poll_until_done(clip, deadline)
        if outcome is None:
            return
        self._settle(clip, outcome, job.dest)

    def poll_once(self, job: ClipJob, failures: int = 0) -> str:
        """ONE look at the clip's operation (the task runners' follow step; `_follow` is the looping version).

        Returns `settled` when this look ended the operation's wait (done and downloaded, filtered, failed, or
        released for a new attempt), `running` when Veo is still working (look again after POLLING_INTERVAL),
        or `failing` when the poll itself failed (safe to repeat: look again after a back-off)."""
        self._current.job = job
        clip = self.store.clip(job.key)
        if self._expired(clip):
            return "settled"
        assert clip.operation_name is not None  # polled only after its receipt was committed
        try:
            outcome = self.backend.poll(clip.operation_name)
        except OperationNotFound as exc:  # no poll can bring it back: fail now, not at OPERATION_TIMEOUT
            self.store.end_operation(clip.operation_name, "lost")
            self._release(clip, ClipStatus.failed, error=self._not_found(clip, str(exc)))
            return "settled"
        except Exception as exc:  # polls are safe to repeat
            log.warning("poll of %s failed (%s); retrying", clip.operation_name, exc)
            if failures + 1 > 50:
                self._release(clip, ClipStatus.submitted, error=f"polling keeps failing: {exc}")
                return "settled"
            return "failing"
        if outcome.done:
            self._settle(clip, outcome, job.dest)
            return "settled"
        if time.time() > (clip.submitted_at or time.time()) + self.s.operation_timeout:
            self._timed_out(clip)
            return "settled"
        return "running"

    def _expired(self, clip: VideoClip) -> bool:
        """Past the service's retention: failed at once (no poll can fetch it), with what to do."""
        if past_retention(clip.operation_name, clip.submitted_at, time.time()):
            if clip.operation_name:
                self.store.end_operation(clip.operation_name, "lost")
            self._release(clip, ClipStatus.failed, error=gone_message(clip.production_id, clip.index,
                                                                      "submitted more than 2 days ago"))
            return True
        return False

    def _settle(self, clip: VideoClip, outcome: Outcome, dest: Path) -> None:
        """A finished operation: filtered, failed (a new attempt is allowed: it was not charged) or downloaded."""
        assert clip.operation_name is not None  # settled only after its receipt was committed
        self.store.end_operation(clip.operation_name,
                                 "filtered" if outcome.filtered else "failed" if outcome.error else "done")
        if outcome.filtered:
            self._release(clip, ClipStatus.filtered, error=f"safety filter: {outcome.filtered}", operation_name=None)
            return
        if outcome.error:  # failed generations are not charged: a new attempt is allowed
            retries = clip.retries + 1
            status = ClipStatus.failed if retries > self.s.veo3_max_retries else ClipStatus.pending
            self._release(clip, status, error=outcome.error, retries=retries, operation_name=None)
            return
        self.store.update_clip(clip.key, video_uri=outcome.uri, status=ClipStatus.downloading)
        self._download(clip, outcome, dest)

    def _timed_out(self, clip: VideoClip) -> None:
        assert clip.operation_name is not None  # timed out only after its receipt was committed
        self.store.end_operation(clip.operation_name, "timeout")
        self._release(clip, ClipStatus.failed,
                      error=f"operation {clip.operation_name} did not finish within OPERATION_TIMEOUT "
                            f"({self.s.operation_timeout:.0f}s); not resubmitted (it may still finish: "
                            f"`reelcrew repair` re-checks it)")

    def _poll_until_done(self, clip: VideoClip, deadline: float) -> Outcome | None:
        assert clip.operation_name is not None  # polled only after its receipt was committed
        failures = 0
        while True:
            try:
                outcome = self.backend.poll(clip.operation_name)
                failures = 0
            except OperationNotFound as exc:  # no poll can bring it back: fail now, not at OPERATION_TIMEOUT
                self.store.end_operation(clip.operation_name, "lost")
                self._release(clip, ClipStatus.failed, error=self._not_found(clip, str(exc)))
                return None
            except Exception as exc:  # polls are safe to repeat: back off and keep going
                failures += 1
                outcome = None
                log.warning("poll of %s failed (%s); retrying", clip.operation_name, exc)
                if failures > 50:
                    self._release(clip, ClipStatus.submitted, error=f"polling keeps failing: {exc}")
                    return None
            if outcome and outcome.done:
                return outcome
            if self._stop.is_set():  # the receipt stays: the next run re-attaches it
                self._release(clip, ClipStatus.submitted)
                return None
            if time.time() > deadline:
                self._timed_out(clip)
                return None
            backoff = min(max(self.s.polling_interval, 0.05) * 2 ** failures, 30)
            self._sleep(self.s.polling_interval if outcome else backoff)

    def _not_found(self, clip: VideoClip, detail: str) -> str:
        return (f"Veo does not know operation {clip.operation_name} ({detail}): it expired, was deleted, or was "
                f"made on another backend than {self.backend.name}; not resubmitted (that is a new paid request). "
                f"Run `reelcrew retry {clip.production_id} --clip {clip.index}` to make the clip again")

    def _download(self, clip: VideoClip, outcome: Outcome, dest: Path) -> None:
        """Fetch and validate, patiently: DOWNLOAD_TIMEOUT per attempt, back-off over DOWNLOAD_RETRY_WINDOW.

        The operation is never resubmitted here. Every attempt after the first polls again for a fresh handle
        (the old one may hold truncated bytes). A video the service has deleted fails at once with what to do.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = part_path(dest)
        base = max(self.s.polling_interval, 0.05)
        retrying = Retrying(
            stop=stop_before_delay(self.s.download_retry_window) | stop_when_event_set(self._stop),
            wait=wait_exponential(multiplier=base, max=300) + wait_random(0, base),
            retry=retry_if_not_exception_type((VideoGone, OperationNotFound, StorageError)), sleep=self._sleep,
            reraise=True,
            before_sleep=lambda state: self._download_failed(clip, state))
        tries = 0
        assert clip.operation_name is not None  # downloads follow a committed receipt
        self.store.processing(clip.operation_name, None)
        try:
            for attempt in retrying:
                with attempt:
                    tries = attempt.retry_state.attempt_number
                    info = self._fetch_once(clip, outcome, tmp, fresh=tries > 1, dest=dest)
        except VideoGone as exc:
            self.store.processing(clip.operation_name, "failed")
            self._release(clip, ClipStatus.failed, error=gone_message(clip.production_id, clip.index, str(exc)))
            return
        except OperationNotFound as exc:
            self.store.processing(clip.operation_name, "failed")
            self._release(clip, ClipStatus.failed, error=self._not_found(clip, str(exc)))
            return
        except StorageError:  # the receipt stays: once there is room, the next run downloads it (never re-paid)
            with suppress(StorageError):
                self._release(clip, ClipStatus.submitted, error="download stopped: the disk is full or read-only")
            raise
        except Exception as exc:
            if self._stop.is_set():  # the receipt stays: the next run re-attaches and downloads again
                self._release(clip, ClipStatus.submitted)
                return
            kept = (" (the Gemini API keeps it 2 days after generation)" if on_gemini_api(clip.operation_name)
                    else "")
            self.store.processing(clip.operation_name, "failed")
            self._release(clip, ClipStatus.failed,
                          error=f"download kept failing: {tries} attempts over DOWNLOAD_RETRY_WINDOW "
                                f"({self.s.download_retry_window:.0f}s), last: {exc}; the operation is kept{kept}: "
                                f"`reelcrew repair` fetches it again")
            return
        digest = sha256_file(tmp)
        os.replace(tmp, dest)
        choice = getattr(self._current, "choice", None)  # several samples: the others beside the clip
        if choice is not None:
            samples.place(choice, dest, self.s.veo3_keep_samples)
        try:  # done only once stored too: the receipt stays, so a store that refuses costs a download, not a clip
            stored = artifacts.put_clip(self.s, clip.key, dest, digest)
        except StorageError:
            with suppress(StorageError):
                self._release(clip, ClipStatus.submitted, error="not stored: the artifact store refused it")
            raise
        made = choice.generated if choice is not None else 1  # Veo bills every sample it made, none it withheld
        billed = billed_seconds(self.s, clip.index, clip.prompt.duration)  # an extension may bill more than it keeps
        self.store.finish_clip(clip.key, dest.resolve(), digest, info.duration, self._price(clip, made), stored,
                               samples=made, billed_seconds=billed if abs(billed - info.duration) > 0.5 else None)
        self.store.processing(clip.operation_name, "ok")
        self.heartbeat.drop(self._owner())
        self.store.log("done", f"{dest.name} {info.duration:.2f}s", clip.production_id, clip.index, "clips")
        if choice is not None:  # the samples were checked already: the choice is the clip's quality record
            samples.record(self.store, clip, choice)
        else:
            qc.record(self.s, self.store, clip.key, dest)  # black, frozen, silent: flagged (followups may regenerate)

    def _download_failed(self, clip: VideoClip, state) -> None:
        """Between attempts: say what failed (the heartbeat keeps the claim through the back-off)."""
        log.warning("download %d of clip %s failed: %s; next try in %.1fs", state.attempt_number, clip.key,
                    state.outcome.exception(), state.upcoming_sleep)

    def _fetch_once(self, clip: VideoClip, outcome: Outcome, tmp: Path, fresh: bool, dest: Path | None = None):
        """One download attempt into `tmp`, validated; on any failure `tmp` is removed. An extension's whole
        video is kept beside `dest`, and `tmp` keeps its new part (continuity_refs.keep_new_part)."""
        try:
            if fresh:
                if self._stop.is_set():
                    raise InterruptedError("stopping: the download resumes on the next run")
                assert clip.operation_name is not None  # downloads follow a committed receipt
                outcome = self.backend.poll(clip.operation_name)
            continuity.restore_frame(self.s, self.store, clip.prompt)  # a mock clip draws its first frame
            inputs = self._inputs(clip)
            self._current.choice = None
            # several samples asked for (or made: a request re-attached under other settings): all fetched and
            # checked, the best one left at tmp, and every one billed
            if sample_count(self.s) > 1 or len(outcome.samples) > 1:
                return self._fetch_samples(clip, outcome, tmp, inputs)
            with true_causes(tmp, f"clip {clip.index} of {clip.production_id}"):
                self.backend.download(outcome, tmp, clip.prompt, inputs)
            seconds = keep_new_part(tmp, dest or tmp, inputs) if inputs else None
            return self._validate(tmp, clip, seconds)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _fetch_samples(self, clip: VideoClip, outcome: Outcome, tmp: Path, inputs: ClipInputs | None):
        """Several videos of one request (reelcrew.video.samples): the chosen one at `tmp`, its probe returned."""
        def download(one: Outcome, part: Path) -> None:
            with true_causes(part, f"clip {clip.index} of {clip.production_id}"):
                # reference images (an extension has one sample: continuity_refs refuses more)
                self.backend.download(one, part, clip.prompt, inputs)

        expect_sound = model_limits(clip.model).has_audio and self.s.veo3_generate_audio
        choice = samples.fetch(outcome, tmp, download, lambda part: self._validate(part, clip), expect_sound)
        self._current.choice = choice
        assert choice.chosen is not None
        return choice.chosen.info

    def _validate(self, path: Path, clip: VideoClip, seconds: float | None = None):
        """The file against the request; `seconds`: an extension's new part, kept as the scene (continuity_refs)."""
        info = probe(path)
        want_w, want_h = frame_size(clip.prompt.aspect_ratio, clip.prompt.resolution)
        frame = 1 / (info.fps or 24)
        expected = clip.prompt.duration if seconds is None else seconds
        if abs(info.duration - expected) > frame + 0.05:
            raise MediaError(f"duration {info.duration:.2f}s, asked for {expected}s")
        if abs(info.aspect - want_w / want_h) > 0.02:
            raise MediaError(f"shape {info.width}x{info.height}, asked for {clip.prompt.aspect_ratio}")
        if model_limits(clip.model).has_audio and self.s.veo3_generate_audio and not info.has_audio:
            raise MediaError("no audio track, but the model makes sound")
        problem = decodes(path)
        if problem:
            raise MediaError(f"does not decode: {problem}")
        return info

