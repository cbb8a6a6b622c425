"""One clip's life, two-phase: intent → submit → receipt → poll → download → validate → done.

The ledger row is the truth. The operation name is committed in its own transaction the
moment Veo returns it, before anything else; after a crash the row is re-attached by that
name and polled, never resubmitted. A clip whose key is done is reused, never paid again.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import google.auth.exceptions
import httpx
from sqlalchemy import func, select
from tenacity import (Retrying, retry_if_not_exception_type, stop_before_delay, stop_when_event_set, wait_exponential,
                      wait_random)

from reelcrew.files import owner_alive, part_path, sha256_file
from reelcrew.media import MediaError, decodes, probe
from reelcrew.models import ClipStatus, VideoClip, frame_size, veo_limits
from reelcrew.settings import Settings
from reelcrew.store import ME, Store, clips, utc_day
from reelcrew.video.backends import Outcome, VeoBackend
from reelcrew.video.quota import Breaker, QuotaPaused, RateGate, classify_429, jitter, next_quota_reset
from reelcrew.video.retention import VideoGone, gone_message, on_gemini_api, past_retention

log = logging.getLogger("reelcrew.video")
IN_FLIGHT = (ClipStatus.submitting.value, ClipStatus.submitted.value)
FINAL = {ClipStatus.done, ClipStatus.filtered, ClipStatus.failed, ClipStatus.ambiguous}


@dataclass
class ClipJob:
    key: str
    dest: Path  # where the production wants the file
    retry_final: bool = False  # `reelcrew retry`: regenerate a failed/filtered/ambiguous clip


@dataclass
class Budget:
    """Hard caps checked before every paid submit (in the same transaction that claims the slot)."""

    run_usd: float | None = None
    daily_usd: float | None = None
    run_started: float = field(default_factory=time.time)

    def refusal(self, store: Store, conn, price: float, key: str) -> str | None:
        """Spent + promised (every clip between intent and cost row, priced like this one) + this clip ≤ cap."""
        in_flight = conn.execute(select(func.count()).select_from(clips).where(
            clips.c.status.in_(("submitting", "submitted", "downloading")), clips.c.key != key)).scalar_one()
        if self.run_usd is not None:
            spent = store.spent_usd(conn, since=self.run_started)
            if spent + price * (in_flight + 1) > self.run_usd + 1e-9:
                return f"run budget ${self.run_usd:.2f} reached (spent ${spent:.2f}, {in_flight} in flight)"
        if self.daily_usd is not None:
            spent = store.spent_usd(conn, day=utc_day())
            if spent + price * (in_flight + 1) > self.daily_usd + 1e-9:
                return f"daily budget ${self.daily_usd:.2f} reached (spent ${spent:.2f} today, {in_flight} in flight)"
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
        self._stop = threading.Event()

    # -- public --------------------------------------------------------------------------
    def run(self, jobs: list[ClipJob]) -> list[VideoClip]:
        """Generate every job; Ctrl-C or SIGTERM stops at once, leaving receipts for `reelcrew resume`."""
        if not jobs:
            return []
        # Twice the Veo limit in threads, so downloads overlap the next submits; the ledger enforces the limit.
        workers = min(len(jobs), 2 * self.s.veo3_max_concurrent)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clip")
        futures = [pool.submit(self._safe_one, job) for job in jobs]
        try:
            return [f.result() for f in futures]
        except KeyboardInterrupt:
            self.stop()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        """Workers finish their current step (never mid-receipt), release their leases and return."""
        self._stop.set()

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _safe_one(self, job: ClipJob) -> VideoClip:
        try:
            return self.generate(job)
        except Exception as exc:  # never lose the batch to one clip
            log.exception("clip %s crashed", job.key)
            self.store.update_clip(job.key, status=ClipStatus.failed, error=f"internal error: {exc}",
                                   lease_owner=None, lease_until=0.0)
            return self._changed(job.key)

    def _changed(self, key: str) -> VideoClip:
        clip = self.store.clip(key)
        self.on_change(clip)
        return clip

    # -- one clip ---------------------------------------------------------------------------
    def generate(self, job: ClipJob) -> VideoClip:
        clip = self.store.clip(job.key)
        if job.retry_final and clip.status in FINAL - {ClipStatus.done}:
            self.store.update_clip(job.key, status=ClipStatus.pending, error=None, retries=0,
                                   possible_duplicate=clip.status == ClipStatus.ambiguous, operation_name=None)
        while True:
            clip = self.store.clip(job.key)
            if self._stop.is_set():
                return clip
            if clip.status == ClipStatus.done and self._reuse(clip, job):
                return self._changed(job.key)
            if clip.status in FINAL - {ClipStatus.done}:
                return self._changed(job.key)
            mode, wait = self._claim(clip)
            if mode == "attach":
                self._follow(job)
            elif mode == "submit":
                if not self._submit(job):
                    continue
                self._follow(job)
            elif mode == "paused":
                return self._changed(job.key)
            else:
                self._sleep(wait)

    def _reuse(self, clip: VideoClip, job: ClipJob) -> bool:
        """A done clip is reused if its file still checks out; else it is demoted for re-download."""
        if clip.path and Path(clip.path).exists() and (not clip.sha256 or sha256_file(Path(clip.path)) == clip.sha256):
            if Path(clip.path).resolve() != job.dest.resolve():
                job.dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = part_path(job.dest)
                shutil.copyfile(clip.path, tmp)
                os.replace(tmp, job.dest)
            return True
        self.store.update_clip(clip.key, status=ClipStatus.submitted if clip.operation_name else ClipStatus.pending,
                               path=None, error="file missing: fetching it again")
        return False

    def _claim(self, clip: VideoClip) -> tuple[str, float]:
        """Atomically decide what this process does with the clip: submit, attach, wait, or pause."""
        try:
            delay = self.breaker.before_submit() if not clip.operation_name else 0.0
        except QuotaPaused as paused:
            self.store.update_clip(clip.key, status=ClipStatus.paused, error=str(paused))
            return "paused", 0
        now = time.time()
        with self.store.tx() as c:
            row = c.execute(select(clips).where(clips.c.key == clip.key)).mappings().one()
            if row["lease_owner"] and row["lease_owner"] != ME and row["lease_until"] > now and owner_alive(row["lease_owner"]):
                return "wait", self.tick  # another live process has it
            if row["operation_name"] and row["status"] in ("submitted", "submitting", "paused", "downloading"):
                self.store.update_clip(clip.key, c, status=ClipStatus.submitted, lease_owner=ME,
                                       lease_until=now + self.lease_ttl)
                return "attach", 0
            if delay > 0:
                return "wait", min(delay, 1.0)
            others = c.execute(select(clips.c.status, clips.c.lease_owner).where(
                clips.c.status.in_(IN_FLIGHT), clips.c.key != clip.key)).all()
            # a receipt is in flight at Veo whoever holds it; an intent only while its process lives
            in_flight = sum(1 for status, owner in others if status == "submitted" or owner_alive(owner))
            if in_flight >= self.s.veo3_max_concurrent:
                return "wait", self.tick
            refusal = self.budget.refusal(self.store, c, self._price(clip), clip.key)
            if refusal:
                self.store.update_clip(clip.key, c, status=ClipStatus.paused, error=f"not submitted: {refusal}")
                return "paused", 0
            stale_intent = row["status"] == "submitting"  # a process died between intent and receipt
            self.store.update_clip(clip.key, c, status=ClipStatus.submitting, lease_owner=ME,
                                   lease_until=now + self.lease_ttl,
                                   possible_duplicate=bool(row["possible_duplicate"]) or stale_intent)
        return "submit", 0

    def _price(self, clip: VideoClip) -> float:
        """What Veo charges for this clip when it succeeds (the mock is free)."""
        if self.backend.name == "mock":
            return 0.0
        return clip.prompt.duration * self.s.price_per_second(clip.model, clip.prompt.resolution)

    def _submit(self, job: ClipJob) -> bool:
        """One paid request. True when a receipt was committed; False to go round again."""
        from google.genai import errors

        clip = self.store.clip(job.key)
        if self.rate is not None:  # None for the mock: it has no real quota (VEO3_MOCK_QUOTA_RATE rehearses 429s)
            self.rate.acquire()
        if self._stop.is_set():  # stopping: the intent is withdrawn, nothing was sent
            self._release(clip, ClipStatus.pending)
            return False
        try:
            name = self.backend.submit(clip.prompt, clip.model)
        except errors.ClientError as exc:
            return self._rejected(clip, exc)
        except errors.ServerError as exc:
            if exc.code == 503 or exc.status == "UNAVAILABLE":  # an explicit "not now": nothing was created
                return self._failed_attempt(clip, f"Veo unavailable on submit ({exc.code}): {exc.message}")
            return self._ambiguous(clip, f"server error {exc.code} on submit: {exc.message}")
        except google.auth.exceptions.GoogleAuthError as exc:  # no token, so nothing reached Veo
            reason = f"Vertex AI credentials did not work ({type(exc).__name__}: {exc})"
            if getattr(exc, "retryable", False):
                return self._failed_attempt(clip, reason)
            self._release(clip, ClipStatus.failed,
                          error=f"{reason}; nothing was submitted. Fix the project's credentials (`gcloud auth "
                                f"application-default login` or GOOGLE_APPLICATION_CREDENTIALS), then run "
                                f"`reelcrew retry {clip.production_id} --clip {clip.index}`")
            return False
        except httpx.ConnectError as exc:
            if connection_refused(exc):  # refused at connect(): not one byte of the request left this machine
                return self._failed_attempt(clip, f"connection refused on submit, nothing was sent ({exc})")
            return self._ambiguous(clip, f"submit {type(exc).__name__}: {exc}")
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            return self._ambiguous(clip, f"submit {type(exc).__name__}: {exc}")
        with self.store.tx() as c:  # the receipt, in its own transaction, before anything else
            self.store.update_clip(clip.key, c, status=ClipStatus.submitted, operation_name=name,
                                   submitted_at=time.time(), lease_owner=ME, lease_until=time.time() + self.lease_ttl,
                                   error=None)
            self.store.add_receipt(c, clip.key, name, "accepted", clip.retries + 1, clip.possible_duplicate)
        self.breaker.success()
        self.store.log("submitted", name, clip.production_id, clip.index, "clips", attempt=clip.retries + 1)
        return True

    def _rejected(self, clip: VideoClip, exc) -> bool:
        if exc.code == 429:
            signal = classify_429(exc.details)
            if signal.kind == "day":
                until = next_quota_reset(time.time(), self.s.veo3_quota_reset_interval)
                self.breaker.pause_day(until, "Veo answered 429 with a per-day QuotaFailure")
                self._release(clip, ClipStatus.pending)
                return False  # next claim sees the pause and parks the clip
            self._release(clip, ClipStatus.pending, error=f"quota 429 ({signal.kind}); waiting")
            self.store.log("quota", f"429 {signal.kind}, retry in {signal.retry_after or 'back-off'}",
                           clip.production_id, clip.index, "clips")
            if signal.kind == "minute" and signal.retry_after is not None:
                self._sleep(jitter(signal.retry_after))
            else:
                self.breaker.failure("bare 429")
                self._sleep(jitter(min(self.s.veo3_retry_wait_base, 60)))
            return False
        message = exc.message or str(exc)
        if exc.code == 404:
            message = f"model {clip.model} not found or retired ({message}); set VEO3_MODEL to a current model"
        self._release(clip, ClipStatus.failed, error=f"Veo refused the request ({exc.code} {exc.status}): {message}")
        return False

    def _failed_attempt(self, clip: VideoClip, reason: str) -> bool:
        retries = clip.retries + 1
        self.breaker.failure(reason)
        if retries > self.s.veo3_max_retries:
            self._release(clip, ClipStatus.failed, error=f"{reason} (gave up after {retries} attempts)", retries=retries)
            return False
        self._release(clip, ClipStatus.pending, error=reason, retries=retries)
        self._sleep(jitter(self.s.veo3_retry_wait_base * 2 ** (retries - 1)))
        return False

    def _ambiguous(self, clip: VideoClip, reason: str) -> bool:
        """Veo may have accepted (and will charge) this submit: record it, never resend it blindly."""
        with self.store.tx() as c:
            self.store.add_receipt(c, clip.key, None, "ambiguous", clip.retries + 1, True)
            self.store.update_clip(clip.key, c, status=ClipStatus.ambiguous, lease_owner=None, lease_until=0.0,
                                   possible_duplicate=True,
                                   error=f"{reason}. Veo may have accepted it; not resubmitted to avoid paying twice. "
                                         f"Run `reelcrew retry {clip.production_id} --clip {clip.index}` to submit again.")
        self.breaker.failure(reason)
        return False

    def _release(self, clip: VideoClip, status: ClipStatus, **values) -> None:
        self.store.update_clip(clip.key, status=status, lease_owner=None, lease_until=0.0, **values)

    # -- after the receipt -------------------------------------------------------------------
    def _follow(self, job: ClipJob) -> None:
        """Poll until done, then download and validate; the operation is never resubmitted here."""
        clip = self.store.clip(job.key)
        row = self.store.clip_row(job.key)
        if past_retention(clip.operation_name, row["submitted_at"], time.time()):
            self._release(clip, ClipStatus.failed, error=gone_message(clip.production_id, clip.index,
                                                                      "submitted more than 2 days ago"))
            return
        deadline = (row["submitted_at"] or time.time()) + self.s.operation_timeout
        outcome = self._poll_until_done(clip, deadline)
        if outcome is None:
            return
        if outcome.filtered:
            self._release(clip, ClipStatus.filtered, error=f"safety filter: {outcome.filtered}", operation_name=None)
            return
        if outcome.error:  # failed generations are not charged: a new attempt is allowed
            retries = clip.retries + 1
            status = ClipStatus.failed if retries > self.s.veo3_max_retries else ClipStatus.pending
            self._release(clip, status, error=outcome.error, retries=retries, operation_name=None)
            return
        self.store.update_clip(clip.key, video_uri=outcome.uri, status=ClipStatus.downloading)
        self._download(clip, outcome, job.dest)

    def _poll_until_done(self, clip: VideoClip, deadline: float) -> Outcome | None:
        failures = 0
        while True:
            try:
                outcome = self.backend.poll(clip.operation_name)
                failures = 0
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
                self._release(clip, ClipStatus.failed,
                              error=f"operation {clip.operation_name} did not finish within OPERATION_TIMEOUT "
                                    f"({self.s.operation_timeout:.0f}s); not resubmitted (it may still finish: "
                                    f"`reelcrew repair` re-checks it)")
                return None
            self.store.update_clip(clip.key, lease_owner=ME, lease_until=time.time() + self.lease_ttl)
            self._sleep(self.s.polling_interval if outcome else min(max(self.s.polling_interval, 0.05) * 2 ** failures, 30))

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
            retry=retry_if_not_exception_type(VideoGone), sleep=self._sleep, reraise=True,
            before_sleep=lambda state: self._download_failed(clip, state))
        tries = 0
        try:
            for attempt in retrying:
                with attempt:
                    tries = attempt.retry_state.attempt_number
                    info = self._fetch_once(clip, outcome, tmp, fresh=tries > 1)
        except VideoGone as exc:
            self._release(clip, ClipStatus.failed, error=gone_message(clip.production_id, clip.index, str(exc)))
            return
        except Exception as exc:
            if self._stop.is_set():  # the receipt stays: the next run re-attaches and downloads again
                self._release(clip, ClipStatus.submitted)
                return
            kept = (" (the Gemini API keeps it 2 days after generation)" if on_gemini_api(clip.operation_name)
                    else "")
            self._release(clip, ClipStatus.failed,
                          error=f"download kept failing: {tries} attempts over DOWNLOAD_RETRY_WINDOW "
                                f"({self.s.download_retry_window:.0f}s), last: {exc}; the operation is kept{kept}: "
                                f"`reelcrew repair` fetches it again")
            return
        digest = sha256_file(tmp)
        os.replace(tmp, dest)
        usd = self._price(clip)
        with self.store.tx() as c:
            current = self.store.clip(clip.key, c)
            self.store.update_clip(clip.key, c, status=ClipStatus.done, path=str(dest.resolve()), sha256=digest,
                                   duration=info.duration, cost_usd=usd, error=None, lease_owner=None,
                                   lease_until=0.0)
            self.store.record_cost(c, current, info.duration, usd)
        self.store.log("done", f"{dest.name} {info.duration:.2f}s", clip.production_id, clip.index, "clips")

    def _download_failed(self, clip: VideoClip, state) -> None:
        """Between attempts: say what failed, and keep the lease through the back-off and the next attempt."""
        log.warning("download %d of clip %s failed: %s; next try in %.1fs", state.attempt_number, clip.key,
                    state.outcome.exception(), state.upcoming_sleep)
        self.store.update_clip(clip.key, lease_owner=ME,
                               lease_until=time.time() + state.upcoming_sleep + self.lease_ttl)

    def _fetch_once(self, clip: VideoClip, outcome: Outcome, tmp: Path, fresh: bool):
        """One download attempt into `tmp`, validated; on any failure `tmp` is removed."""
        try:
            if fresh:
                if self._stop.is_set():
                    raise InterruptedError("stopping: the download resumes on the next run")
                outcome = self.backend.poll(clip.operation_name)
            self.backend.download(outcome, tmp, clip.prompt)
            return self._validate(tmp, clip)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _validate(self, path: Path, clip: VideoClip):
        info = probe(path)
        want_w, want_h = frame_size(clip.prompt.aspect_ratio, clip.prompt.resolution)
        frame = 1 / (info.fps or 24)
        if abs(info.duration - clip.prompt.duration) > frame + 0.05:
            raise MediaError(f"duration {info.duration:.2f}s, asked for {clip.prompt.duration}s")
        if abs(info.aspect - want_w / want_h) > 0.02:
            raise MediaError(f"shape {info.width}x{info.height}, asked for {clip.prompt.aspect_ratio}")
        if veo_limits(clip.model).has_audio and not info.has_audio:
            raise MediaError("no audio track, but the model makes sound")
        problem = decodes(path)
        if problem:
            raise MediaError(f"does not decode: {problem}")
        return info


def connection_refused(exc: BaseException) -> bool:
    """True when the connection was refused (ECONNREFUSED): the request was never sent, so a retry is safe."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError) or getattr(current, "errno", None) == errno.ECONNREFUSED:
            return True
        current = current.__cause__ or current.__context__
    return False
