"""Serving benchmark: a mock batch run by `reelcrew serve` while 20 clients poll `GET /api/productions/{id}` and
5 listen on SSE, against the same batch run by the CLI (`reelcrew run --mock --yes`).

Prints the API's p50/p95/max latency, the SSE listeners' event counts, and both wall times (the overhead of
serving). Each side gets its own fresh state and output folders (nothing reused between them).
Usage: python bench/bench_serve.py [--topics N] [--scenes S] [--pollers 20] [--listeners 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]
TOPICS = ["how tea is made", "why volcanoes erupt", "茶是怎么制作的", "how bread rises", "why the sea is salty"]


def isolated(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REELCREW_", "VEO3_", "GEMINI_", "GOOGLE_"))}
    env.update(HOME=str(home), REELCREW_STATE_DIR=str(home / "state"), REELCREW_OUTPUT_DIR=str(home / "out"))
    env.pop("XDG_DATA_HOME", None)
    return env


def cli_batch(topics: list[str], scenes: int) -> float:
    home = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    args = [sys.executable, "-m", "reelcrew", "run", "--mock", "--yes", "--scenes", str(scenes), "--json"]
    for topic in topics:
        args += ["--topic", topic]
    start = time.perf_counter()
    subprocess.run(args, env=isolated(home), check=True, capture_output=True, cwd=home)
    return time.perf_counter() - start


def serve_batch(topics: list[str], scenes: int, pollers: int, listeners: int, workers: int) -> dict:

    home = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    env = isolated(home)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(home)
    from tests.web_helpers import ADMIN, LiveServer

    latencies: list[float] = []
    events = [0] * listeners
    with LiveServer(home / "out", workers=workers) as live:
        client = live.client(ADMIN)
        start = time.perf_counter()
        made = client.post("/api/productions", json={"topics": topics, "scenes": scenes, "mock": True})
        ids = [p["id"] for p in made.json()["productions"]]
        finished = threading.Event()

        def poll(n: int) -> None:
            mine = live.client(ADMIN)
            while not finished.is_set():
                began = time.perf_counter()
                mine.get(f"/api/productions/{ids[n % len(ids)]}").raise_for_status()
                latencies.append(time.perf_counter() - began)

        def listen(n: int) -> None:
            with live.client(ADMIN) as mine, mine.stream("GET", "/api/events") as stream:
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        events[n] += 1
                    if finished.is_set():
                        return

        threads = [threading.Thread(target=poll, args=(n,), daemon=True) for n in range(pollers)]
        threads += [threading.Thread(target=listen, args=(n,), daemon=True) for n in range(listeners)]
        for thread in threads:
            thread.start()
        while not all(client.get(f"/api/productions/{pid}").json()["status"] == "done" and
                      not client.get(f"/api/productions/{pid}").json()["busy"] for pid in ids):
            time.sleep(0.2)
        wall = time.perf_counter() - start
        finished.set()
        live.server.should_exit = True
    ordered = sorted(latencies) or [0.0]
    return {"wall": wall, "requests": len(latencies), "p50": statistics.median(ordered),
            "p95": ordered[int(0.95 * (len(ordered) - 1))], "max": ordered[-1], "events": events}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--topics", type=int, default=3)
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--pollers", type=int, default=20)
    ap.add_argument("--listeners", type=int, default=5)
    ap.add_argument("--workers", type=int, default=3, help="serve's productions at the same time")
    args = ap.parse_args()
    topics = TOPICS[:args.topics]
    cli = cli_batch(topics, args.scenes)
    served = serve_batch(topics, args.scenes, args.pollers, args.listeners, args.workers)
    print(f"batch: {len(topics)} topics x {args.scenes} scenes, mock; load average {os.getloadavg()[0]:.1f}")
    print(f"CLI wall {cli:.1f} s; serve wall {served['wall']:.1f} s (x{served['wall'] / cli:.2f}) "
          f"with {args.pollers} pollers and {args.listeners} SSE listeners")
    print(f"GET /api/productions/{{id}}: {served['requests']} requests, p50 {served['p50'] * 1000:.0f} ms, "
          f"p95 {served['p95'] * 1000:.0f} ms, max {served['max'] * 1000:.0f} ms")
    print(f"SSE events received per listener: {served['events']}")


if __name__ == "__main__":
    main()
