"""`reelcrew worker`'s pool per queue: one Celery worker process per queue, each with its own threads, under one
parent that starts them, passes SIGTERM/SIGINT on and stops them all when one ends.

Why: a Celery worker has ONE pool for every queue it consumes, so with all queues in one worker a 20-second render,
two writers and the clip steps' short looks share its few threads: the clips of a production that is ready wait
behind a render, and the first final comes late. Celery has no pool per queue, hence a process per queue. The
sizes are the local runner's (`runners.local.pool_sizes`: writers REELCREW_WRITERS_CONCURRENCY, clips
max(4, 2 x VEO3_MAX_CONCURRENT), render REELCREW_RENDER_CONCURRENCY, maintenance 1), so a worker on one machine
behaves as the local runner does; `--pools clips=8,render=2` changes them, `--concurrency N` keeps one shared pool.

A child dies with its parent (PR_SET_PDEATHSIG on Linux): a `kill -9` of the worker is a machine lost, never
orphaned consumers still taking tasks."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from reelcrew.errors import ConfigError

log = logging.getLogger("reelcrew.workers")
PR_SET_PDEATHSIG = 1


def parse_pools(text: str | None) -> dict[str, int]:
    """`writers=2,clips=8` → {"writers": 2, "clips": 8}; a queue not named keeps its default size."""
    from reelcrew.workers import QUEUES

    sizes: dict[str, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        queue, _, size = part.partition("=")
        queue = queue.strip()
        if queue not in QUEUES or not size.strip().isdigit() or int(size) < 1:
            raise ConfigError(f"--pools {part.strip()!r} is not QUEUE=THREADS",
                              f"write e.g. --pools writers=2,clips=8,render=1 (queues: {', '.join(QUEUES)})")
        sizes[queue] = int(size)
    return sizes


def pool_plan(settings: Any, queues: list[str] | None, overrides: dict[str, int]) -> dict[str, int]:
    """The threads of each queue's process: the local runner's sizes, with `--pools` on top, for `queues` only."""
    from reelcrew.runners.local import pool_sizes
    from reelcrew.workers import QUEUES

    wanted = queues or list(QUEUES)
    unknown = [q for q in wanted if q not in QUEUES]
    if unknown:
        raise ConfigError(f"unknown queue(s): {', '.join(unknown)}", f"choose among {', '.join(QUEUES)}")
    sizes = {**pool_sizes(settings), **overrides}
    return {queue: sizes[queue] for queue in QUEUES if queue in wanted}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent still stops its children on SIGTERM
        pass


def child_argv(queue: str, threads: int, pool: str, config: str | None, extra: list[str]) -> list[str]:
    """One queue's worker: this same command with one queue and one pool size (`--concurrency`)."""
    argv = [sys.executable, "-m", "reelcrew", "worker", "--queues", queue, "--concurrency", str(threads),
            "--pool", pool]
    if config:
        argv += ["--config", config]
    return [*argv, *extra]


def run_pools(plan: dict[str, int], argv_for: Callable[[str, int], list[str]]) -> int:
    """Start one worker process per queue, wait; SIGTERM/SIGINT is passed on (Celery's warm shutdown: running
    tasks finish). When one child ends on its own, the others are stopped and its exit code is returned (a
    supervisor restarts the whole worker)."""
    children = {queue: subprocess.Popen(argv_for(queue, threads), preexec_fn=_die_with_parent)
                for queue, threads in plan.items()}
    log.info("worker pools started", extra={"pools": plan, "pids": {q: p.pid for q, p in children.items()}})
    requested: list[int] = []  # the signals asked of this worker (a stop, not a failure)

    def signal_all(signum: int) -> None:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    def pass_on(signum, _frame) -> None:
        requested.append(signum)
        signal_all(signum)

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            ended = {queue: child.returncode for queue, child in children.items() if child.poll() is not None}
            if requested and len(ended) == len(children):
                return 0
            if ended and not requested:
                queue, code = next(iter(ended.items()))
                log.error("the %s worker ended (exit %s): stopping the others", queue, code)
                signal_all(signal.SIGTERM)
                for child in children.values():
                    child.wait()
                return code or 1
            time.sleep(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
