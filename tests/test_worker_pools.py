"""`reelcrew worker`'s pool per queue (issue 12): by default one Celery worker process per queue, each with its own
threads (the local runner's sizes), so a render never holds up the clips; `--pools` sizes them, `--concurrency`
keeps one shared pool. The processes stop together: SIGTERM to the worker stops every queue's process, and a
`kill -9` of the worker (a machine lost) leaves no consumer behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from reelcrew.workers import make_app

REELCREW = [sys.executable, "-m", "reelcrew"]


def test_a_pools_typo_is_refused_with_the_fix_before_anything_connects(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "REELCREW_BROKER": "redis://127.0.0.1:9/0"}
    done = subprocess.run([*REELCREW, "worker", "--pools", "clip=8"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "'clip=8' is not QUEUE=THREADS" in done.stderr and "writers=2,clips=8,render=1" in done.stderr


def _nodes(app, count: int) -> dict[str, list[str]]:
    """The workers' names and the queues each consumes, once `count` of them answer."""
    deadline = time.monotonic() + 300  # start-up of four processes on a loaded machine; a guard, not a check
    while time.monotonic() < deadline:
        queues = app.control.inspect(timeout=1.0).active_queues() or {}
        if len(queues) >= count:
            return {name: sorted(q["name"] for q in qs) for name, qs in queues.items()}
    raise AssertionError(f"fewer than {count} workers answered")


def _gone(pids: list[int]) -> bool:
    """No process left (a zombie awaiting its reaper counts as gone)."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split()[2] != "Z":
                    return False
        except FileNotFoundError:
            continue
    return True


@pytest.mark.servers
@pytest.mark.slow
def test_a_worker_runs_one_process_per_queue_and_they_stop_together(redis, tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "REELCREW_BROKER": redis.url, "REELCREW_LLM": "mock",
           "VEO3_MOCK_MODE": "true", "VEO3_MAX_CONCURRENT": "5", "REELCREW_OUTPUT_DIR": str(tmp_path / "out")}
    app = make_app(redis.url)
    for stop in (signal.SIGTERM, signal.SIGKILL):
        worker = subprocess.Popen([*REELCREW, "worker", "--pools", "render=2"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            nodes = _nodes(app, 4)
            assert sorted(nodes.values()) == [["clips"], ["maintenance"], ["render"], ["writers"]]
            stats = app.control.inspect(timeout=2.0).stats() or {}
            threads = {nodes[name][0]: s["pool"]["max-concurrency"] for name, s in stats.items()}
            assert threads == {"writers": 2, "clips": 10, "render": 2, "maintenance": 1}  # 2 x VEO3_MAX_CONCURRENT
            children = [int(p) for p in subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True,
                                                       text=True).stdout.split()]
            assert len(children) == 4
            worker.send_signal(stop)
            code = worker.wait(timeout=120)
            assert code == (0 if stop == signal.SIGTERM else -signal.SIGKILL)
            deadline = time.monotonic() + 60
            while not _gone(children) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _gone(children), f"a queue's process outlived the worker ({stop.name})"
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
