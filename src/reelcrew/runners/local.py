"""The embedded local runner: one bounded thread pool per queue and a timer for countdowns, in this process.

Writers are bounded by REELCREW_WRITERS_CONCURRENCY (the writers' quota decides the rest); clip steps are short
(a claim, one submit or one poll), so a small pool keeps VEO3_MAX_CONCURRENT operations busy; renders by
REELCREW_RENDER_CONCURRENCY. A step's follow-ups are enqueued as soon as it returns: that is the pipelining (a
production's clips start when its prompts exist, its render when its clips rest, whatever the others do).
A ConfigError or StorageError (the same for every production) stops the batch and `wait` re-raises it."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from reelcrew.settings import Settings
from reelcrew.tasks import Step, Tasks

log = logging.getLogger("reelcrew.runners")


def pool_sizes(settings: Settings) -> dict[str, int]:
    return {"writers": settings.reelcrew_writers_concurrency, "clips": max(4, 2 * settings.veo3_max_concurrent),
            "render": settings.reelcrew_render_concurrency, "maintenance": 1}


class LocalRunner:
    def __init__(self, tasks: Tasks, settings: Settings | None = None):
        self.tasks = tasks
        sizes = pool_sizes(settings or tasks.base)
        self._pools = {queue: ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"run-{queue}")
                       for queue, size in sizes.items()}
        self._cond = threading.Condition()
        self._pending = 0  # steps enqueued and not finished (scheduled ones included)
        self._timers: list[tuple[float, int, Step]] = []
        self._order = itertools.count()
        self._error: BaseException | None = None
        self._stopped = False
        self._timer = threading.Thread(target=self._tick, name="run-timer", daemon=True)
        self._timer.start()

    # -- the seam -----------------------------------------------------------------------------------
    def enqueue(self, step: Step) -> None:
        with self._cond:
            if self._stopped:
                return
            self._pending += 1
            if step.countdown > 0:
                heapq.heappush(self._timers, (time.monotonic() + step.countdown, next(self._order), step))
                self._cond.notify_all()
                return
        self._start(step)

    def wait(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with self._cond:
                while self._pending and self._error is None:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"{self._pending} step(s) still running")
                    self._cond.wait(left if left is not None else 1.0)
                error = self._error
        except BaseException:  # Ctrl-C: the steps running finish their piece; receipts stay for `resume`
            self.stop()
            raise
        if error is not None:
            self.stop()
            raise error

    def stop(self) -> None:
        self.tasks.stop()
        with self._cond:
            self._stopped = True
            self._pending -= len(self._timers)
            self._timers.clear()
            self._cond.notify_all()

    def close(self) -> None:
        """Stop and wait for the steps running now (each ends its piece: a submit commits its receipt)."""
        self.stop()
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)

    # -- inside -------------------------------------------------------------------------------------
    def _start(self, step: Step) -> None:
        try:
            self._pools[step.queue].submit(self._run, step)
        except RuntimeError:  # the pool was shut down (stopping): the step is dropped, its work is in the ledger
            self._done()

    def _run(self, step: Step) -> None:
        try:
            if self._stopped:
                return
            for follow in self.tasks.run(step):
                self.enqueue(follow)
        except BaseException as exc:
            log.warning("%s of %s stopped the batch: %s", step.task, step.production_id, exc)
            with self._cond:
                if self._error is None:
                    self._error = exc
            self.tasks.stop()
        finally:
            self._done()

    def _done(self) -> None:
        with self._cond:
            self._pending -= 1
            self._cond.notify_all()

    def _tick(self) -> None:
        """The countdowns: each step starts when its time has come."""
        while True:
            with self._cond:
                if self._stopped and not self._timers:
                    return
                now = time.monotonic()
                due = []
                while self._timers and self._timers[0][0] <= now:
                    due.append(heapq.heappop(self._timers)[2])
                if not due:
                    wait = self._timers[0][0] - now if self._timers else 1.0
                    self._cond.wait(min(wait, 1.0))
                    continue
            for step in due:
                self._start(step)
