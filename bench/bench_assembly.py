"""Assembly benchmark: our render vs one hand-written ffmpeg command, same inputs, same encoder settings.

Workload (issue 4): N clips × 8 s, 1280x720, 24 fps, with audio; a caption per clip; a text watermark;
0.5 s crossfades. Prints × realtime, the ratio ours/baseline and the peak RSS of the whole process tree.
Usage: python bench/bench_assembly.py [N ...]   (default: 8 24)
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from reelcrew.assemble import CutClip, CutSpec, render_cut  # noqa: E402
from reelcrew.assemble.render import (_caption_layers, _probe_all, _watermark_layer, single_pass_command,  # noqa: E402
                                      timeline)
from reelcrew.media import run_ffmpeg  # noqa: E402
from reelcrew.settings import TransitionStyle  # noqa: E402

WORK = Path(__file__).resolve().parent / "work"


def make_clips(n: int) -> list[Path]:
    WORK.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        path = WORK / f"clip{i}.mp4"
        if not path.exists():
            run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=s=1280x720:r=24:d=8,hue=h={i * 40}", "-f", "lavfi", "-i",
                        f"sine=frequency={300 + 20 * i}:sample_rate=48000:duration=8", "-c:v", "libx264", "-crf", "20",
                        "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)], "bench input")
        paths.append(path)
    return paths


def tree_rss(pid: int) -> int:
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if int(fields.get("PPid", "0").strip() or 0) == pid or status.parent.name == str(pid):
            total += int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    return total


def measure(fn) -> tuple[float, int]:
    import os

    peak, stop = [0], threading.Event()  # peak summed RSS of this process and its children

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(os.getpid()))
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join()
    return elapsed, peak[0]


def main(counts: list[int]) -> None:
    for n in counts:
        clips = [CutClip(path=p, caption=f"第{i + 1}段：清晨的城市慢慢醒来 The city wakes up") for i, p in enumerate(make_clips(n))]
        spec = CutSpec(clips=clips, transitions=TransitionStyle(kind="crossfade", duration=0.5))
        ours_time, ours_rss = measure(lambda: render_cut(spec, WORK / "ours.mp4"))
        # Baseline: one ffmpeg command with every clip open at once and the same filters and encoder settings
        # (the overlays pre-drawn: they are its input, not its work).
        import tempfile

        infos = _probe_all(clips)
        with tempfile.TemporaryDirectory() as tmp:
            layers, _ = _caption_layers(spec, timeline(infos, 0.5), 0.5, Path(tmp))
            layers.append(_watermark_layer(spec, Path(tmp)))
            cmd = single_pass_command(spec, infos, layers, WORK / "baseline.mp4")
            base_time, base_rss = measure(lambda: subprocess.run(cmd, check=True))
        duration = n * 8 - (n - 1) * 0.5
        print(f"clips={n} video={duration:.1f}s ours={ours_time:.2f}s ({duration / ours_time:.2f}x realtime, "
              f"peak tree RSS {ours_rss / 2**20:.0f} MiB) ffmpeg-baseline={base_time:.2f}s "
              f"({duration / base_time:.2f}x, peak RSS {base_rss / 2**20:.0f} MiB) ratio={ours_time / base_time:.3f}", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [8, 24])
