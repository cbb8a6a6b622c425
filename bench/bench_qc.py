"""CPU time of the clip quality check (reelcrew.video.qc) per 8 s clip, at 720p and 1080p.

Run: .venv/bin/python bench/bench_qc.py  (renders mock clips into a temporary folder; prints ffmpeg's own CPU
seconds per check, the median of five, and the wall time)."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from reelcrew.models import VideoPrompt
from reelcrew.video import qc
from reelcrew.video.mockclip import render_mock_clip


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        for resolution in ("720p", "1080p"):
            clip = Path(folder) / f"{resolution}.mp4"
            render_mock_clip(VideoPrompt(index=1, scene_index=1, prompt="a red fox runs through snow", duration=8,
                                         resolution=resolution), clip)
            cpu, wall = [], []
            for _ in range(5):
                started = time.monotonic()
                report = qc.check(clip, expect_sound=True)
                wall.append(time.monotonic() - started)
                cpu.append(report.cpu_seconds)
            print(f"{resolution} 8 s clip: cpu {statistics.median(cpu):.3f} s, wall {statistics.median(wall):.3f} s "
                  f"(median of 5; ok={report.ok})")


if __name__ == "__main__":
    main()
