"""Assembly benchmark (issue 14): our render against one ffmpeg command doing the same cut with libass.

Workload: N clips x 8 s, 1280x720, 24 fps, with audio; a Chinese + English caption per clip shown as
karaoke; a text watermark; 0.5 s `wipeleft` transitions. Ours: `render_cut` (the moviepy composition
compiled to the streaming ffmpeg path). Baseline: one ffmpeg command with every clip open, the same
`xfade` chain, `subtitles=` burning the very `.ass` file our render writes (libass, with its `\\k`
karaoke), the same watermark image and audio curves, the same encoder settings. Both are timed in the
same run, alternating, `--repeat` times each (median). The moviepy path (`render.engine: moviepy`) is timed
once for the ratio beside it. Prints x realtime, ratios and the peak RSS of the whole process tree.

Usage: python bench/bench_assembly.py [N ...] [--repeat R] [--no-moviepy]   (default: 8, R=3)
Which ffmpeg: the one in the imageio-ffmpeg wheel for both (it has libass); `FFMPEG_BINARY` is not used.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from reelcrew.assemble import CutClip, CutSpec, render_cut  # noqa: E402
from reelcrew.assemble.ass import write_ass  # noqa: E402
from reelcrew.assemble.composition import watermark_layer  # noqa: E402
from reelcrew.assemble.render import _encode_args, _probe_all  # noqa: E402
from reelcrew.assemble.transitions import lookup  # noqa: E402
from reelcrew.media import ffmpeg_exe, run_ffmpeg  # noqa: E402
from reelcrew.settings import RenderStyle, SubtitleStyle, TransitionStyle  # noqa: E402

WORK = Path(__file__).resolve().parent / "work"
KIND, FADE = "wipeleft", 0.5


def make_clips(n: int) -> list[Path]:
    WORK.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        path = WORK / f"clip{i}.mp4"
        if not path.exists():
            run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=s=1280x720:r=24:d=8,hue=h={i * 40}", "-f", "lavfi", "-i",
                        f"sine=frequency={300 + 20 * i}:sample_rate=48000:duration=8", "-c:v", "libx264", "-crf", "20",
                        "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
                       "bench input")
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


def cpu_seconds() -> float:
    """User + system time of this process and its waited-for children (every ffmpeg we start is waited for)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn) -> tuple[float, int, float]:
    import os

    peak, stop = [0], threading.Event()  # peak summed RSS of this process and its children

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(os.getpid()))
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start, cpu = time.perf_counter(), cpu_seconds()
    fn()
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    stop.set()
    thread.join()
    return elapsed, peak[0], cpu


def spec_for(clips: list[Path], engine: str = "auto") -> CutSpec:
    captions = [f"第{i + 1}段：清晨的城市慢慢醒来 The city wakes up" for i in range(len(clips))]
    return CutSpec(clips=[CutClip(path=p, caption=c) for p, c in zip(clips, captions, strict=True)],
                   subtitles=SubtitleStyle(style="karaoke"), transitions=TransitionStyle(kind=KIND, duration=FADE),
                   render=RenderStyle(engine=engine))


def baseline_command(spec: CutSpec, ass: Path, mark: Path, mark_xy: tuple[int, int], output: Path) -> list[str]:
    """One ffmpeg: every clip open, xfade chain, libass burning our .ass, the watermark, acrossfade chain."""
    infos = _probe_all(spec.clips)
    n, curves = len(infos), lookup(KIND)
    args = [ffmpeg_exe(), "-y", "-hide_banner", "-v", "error", "-nostdin"]
    graph: list[str] = []
    for i, info in enumerate(infos):
        args += ["-threads", "1", "-i", str(spec.clips[i].path)]
        graph.append(f"[{i}:v]setsar=1,format=yuv420p,trim=duration={info.duration:.4f},setpts=PTS-STARTPTS[v{i}]")
        graph.append(f"[{i}:a]aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo[a{i}]")
    args += ["-i", str(mark)]
    v, a, offset = "v0", "a0", 0.0
    for i in range(1, n):
        offset += infos[i - 1].duration - FADE
        graph.append(f"[{v}][v{i}]xfade=transition={curves.xfade}:duration={FADE}:offset={offset:.4f}[vx{i}]")
        graph.append(f"[{a}][a{i}]acrossfade=d={FADE}:c1={curves.out_curve}:c2={curves.in_curve}[ax{i}]")
        v, a = f"vx{i}", f"ax{i}"
    graph.append(f"[{v}]subtitles=f={ass.name}[vs];[vs][{n}:v]overlay=x={mark_xy[0]}:y={mark_xy[1]}[vo]")
    total = sum(info.duration for info in infos) - FADE * (n - 1)
    return args + ["-filter_complex", ";".join(graph), "-map", "[vo]", "-map", f"[{a}]",
                   *_encode_args(spec.render, total, output)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("counts", nargs="*", type=int, default=[8])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-moviepy", action="store_true")
    options = parser.parse_args()
    for n in options.counts:
        clips = make_clips(n)
        spec = spec_for(clips)
        result = render_cut(spec, WORK / "ours.mp4")  # warm-up; also gives the cues for the .ass
        assert result.path == "fast", result.reason
        with tempfile.TemporaryDirectory() as tmp:
            ass = Path(tmp) / "final.ass"
            write_ass(result.cues, ass, spec.subtitles, result.font, result.font_size, spec.width, spec.height)
            layer = watermark_layer(spec, result.duration)
            mark = Path(tmp) / "watermark.png"
            rgba = np.dstack([layer.img, np.rint(layer.mask.img * 255).astype(np.uint8)])
            Image.fromarray(rgba).save(mark)
            command = baseline_command(spec, ass, mark, layer.pos(0), WORK / "baseline.mp4")
            ours, base = [], []
            for _ in range(options.repeat):  # alternating, so load from elsewhere hits both alike
                base.append(measure(lambda command=command: subprocess.run(command, check=True, cwd=tmp)))
                ours.append(measure(lambda spec=spec: render_cut(spec, WORK / "ours.mp4")))
        duration = result.duration
        med = lambda runs, k: statistics.median(run[k] for run in runs)  # noqa: E731
        ours_t, base_t, ours_cpu, base_cpu = med(ours, 0), med(base, 0), med(ours, 2), med(base, 2)
        line = (f"clips={n} video={duration:.1f}s karaoke+{KIND}: ours={ours_t:.2f}s wall {ours_cpu:.1f}s CPU "
                f"({duration / ours_t:.2f}x realtime, peak tree RSS {max(r[1] for r in ours) / 2**20:.0f} MiB) "
                f"ffmpeg+libass={base_t:.2f}s wall {base_cpu:.1f}s CPU ({duration / base_t:.2f}x, "
                f"peak RSS {max(r[1] for r in base) / 2**20:.0f} MiB) ratio={ours_t / base_t:.3f} "
                f"cpu-ratio={ours_cpu / base_cpu:.3f} (runs ours {[round(r[0], 2) for r in ours]}, "
                f"baseline {[round(r[0], 2) for r in base]})")
        if not options.no_moviepy:
            slow_t, slow_rss, slow_cpu = measure(
                lambda clips=clips: render_cut(spec_for(clips, "moviepy"), WORK / "moviepy.mp4"))
            line += (f" moviepy-path={slow_t:.2f}s wall {slow_cpu:.1f}s CPU ({duration / slow_t:.2f}x, "
                     f"peak RSS {slow_rss / 2**20:.0f} MiB) moviepy-ratio={slow_t / base_t:.3f} "
                     f"moviepy-cpu-ratio={slow_cpu / base_cpu:.3f}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
