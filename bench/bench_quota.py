"""Quota benchmark: 12 clips through the real SDK against the fake server, under Q in flight and R per minute.

Prints wall time / ideal schedule (the lower bound for that quota and latency) and accepted submits / clips.
Usage: python bench/bench_quota.py [--latency L] [--concurrent Q] [--rpm R]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]


def ideal(n: int, latency: float, q: int, rpm: int) -> float:
    """Greedy lower bound: a clip starts when a slot is free and the per-minute window allows it."""
    starts, ends = [], []
    for i in range(n):
        t = 0.0
        if i >= q:
            t = max(t, sorted(ends)[i - q])
        if i >= rpm:
            t = max(t, starts[i - rpm] + 60.0)
        starts.append(t)
        ends.append(t + latency)
    return max(ends)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=10.0)  # real Veo: 11 s to 6 min
    ap.add_argument("--concurrent", type=int, default=3)
    ap.add_argument("--rpm", type=int, default=600)
    ap.add_argument("--clips", type=int, default=12)
    args = ap.parse_args()
    from tests.fakes.google_server import FakeGoogle, Script

    with FakeGoogle(Script(latency=args.latency)) as fake, tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"GEMINI_API_KEY": "bench", "GOOGLE_GEMINI_BASE_URL": fake.url, "POLLING_INTERVAL": "0.1",
                           "NO_PROXY": "127.0.0.1", "REELCREW_STATE_DIR": str(Path(tmp) / "state")})  # not your ledger
        from tests.video_helpers import jobs, prompts, stack

        out = Path(tmp)
        settings, store, gen = stack(out, veo3_max_concurrent=args.concurrent, veo3_rpm=args.rpm)
        work = jobs(store, settings, prompts(args.clips), out)
        start = time.perf_counter()
        clips = gen.run(work)
        wall = time.perf_counter() - start
        done = sum(c.status.value == "done" for c in clips)
        bound = ideal(args.clips, args.latency, args.concurrent, args.rpm)
        print(f"clips={args.clips} done={done} latency={args.latency}s Q={args.concurrent} R={args.rpm}/min "
              f"wall={wall:.2f}s ideal={bound:.2f}s ratio={wall / bound:.3f} "
              f"accepted/clips={fake.accepted / args.clips:.2f}")


if __name__ == "__main__":
    main()
