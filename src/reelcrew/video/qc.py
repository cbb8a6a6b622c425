"""Clip quality checks after download: black, frozen, or silent where the model makes sound.

A downloaded clip has already passed validation (generator._validate: it decodes, has the asked duration and
shape, has an audio track where the model makes sound); that refuses a broken file. This looks at what is
*in* a good file, which Veo sometimes gets wrong without an error: a clip that is mostly black, a picture that
does not move, sound that is there but silent. One ffmpeg pass over a downscaled copy (blackdetect,
freezedetect and silencedetect together) keeps it cheap enough to run on every clip: docs/films.md has the
measured CPU time per 8 s clip.

The setting `qc` decides what a problem does: `flag` (default) records it (manifest, `status --json`, the API)
and cuts the clip in anyway; `regenerate` also makes the clip again as a new paid variant, at most
`qc_max_regenerations` times per scene (reelcrew.rephrase.follow_ups does both kinds of follow-up); `off` skips
the check.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from reelcrew.children import dies_with_parent
from reelcrew.media import ffmpeg_exe, probe
from reelcrew.video.registry import model_limits

if TYPE_CHECKING:
    from reelcrew.settings import Settings
    from reelcrew.store import Store

log = logging.getLogger("reelcrew.video.qc")

# What counts as a problem: a share of the clip's length. A fade from black or a held beat is normal film
# grammar; a clip that is black, still or silent for most of its length is not what anyone asked for.
BLACK_SHARE = 0.4
FROZEN_SHARE = 0.5
SILENT_SHARE = 0.9
ANALYSIS_WIDTH = 320  # pixels: black and frozen frames stay black and frozen at this size, and decode 10x faster
FILTERS = {
    "video": f"scale={ANALYSIS_WIDTH}:-2,blackdetect=d=0.5:pix_th=0.10,freezedetect=n=-70dB:d=1",
    "audio": "silencedetect=n=-50dB:d=1",
}
_PAIR = re.compile(r"(black_start|black_end|freeze_start|freeze_end|silence_start|silence_end):\s*(-?[\d.]+)")


class QualityReport(BaseModel):
    """What the check saw in one clip's file; `problems` empty means it is fine."""

    ok: bool
    problems: list[str] = Field(default_factory=list)
    black_seconds: float = 0.0
    frozen_seconds: float = 0.0
    silent_seconds: float | None = None  # None: no sound expected (a silent model or audio turned off)
    duration: float = 0.0
    width: int = 0
    height: int = 0
    cpu_seconds: float = 0.0  # ffmpeg's user + system time for this check


def _spans(text: str, start: str, end: str, duration: float) -> float:
    """Total seconds between each `start` and its `end` (an open span runs to the end of the clip)."""
    total, opened = 0.0, None
    for name, value in _PAIR.findall(text):
        if name == start:
            opened = float(value)
        elif name == end and opened is not None:
            total += max(0.0, float(value) - opened)
            opened = None
    if opened is not None:
        total += max(0.0, duration - opened)
    return min(total, duration)


def _run_measured(command: list[str]) -> tuple[str, int, float]:
    """Run ffmpeg; its stderr, exit code and CPU seconds (its own rusage, so other clips' work does not count)."""
    process = subprocess.Popen(dies_with_parent(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, errors="replace")
    assert process.stderr is not None
    with process.stderr:
        stderr = process.stderr.read()  # to EOF: ffmpeg has exited (or closed stderr) by then
    _, status, usage = os.wait4(process.pid, 0)  # reaped here, not by Popen, to read the child's own rusage
    process.returncode = os.waitstatus_to_exitcode(status)
    return stderr, process.returncode, usage.ru_utime + usage.ru_stime


def check(path: Path, expect_sound: bool) -> QualityReport:
    """One ffmpeg pass over the clip; a problem is named with its measure so a person can judge it."""
    info = probe(path)
    command = [ffmpeg_exe(), "-hide_banner", "-nostats", "-threads", "1", "-i", str(path),
               "-vf", FILTERS["video"]]
    command += ["-af", FILTERS["audio"]] if expect_sound and info.has_audio else ["-an"]
    stderr, returncode, cpu = _run_measured([*command, "-f", "null", "-"])
    if returncode:
        return QualityReport(ok=False, problems=[f"ffmpeg could not analyse it: {stderr.strip()[-200:]}"],
                             duration=info.duration, width=info.width, height=info.height)
    length = info.duration or 1.0
    black = _spans(stderr, "black_start", "black_end", length)
    frozen = _spans(stderr, "freeze_start", "freeze_end", length)
    silent = _spans(stderr, "silence_start", "silence_end", length) if expect_sound and info.has_audio else None
    problems = []
    if black >= BLACK_SHARE * length:
        problems.append(f"black for {black:.1f} of {length:.1f} s")
    if frozen >= FROZEN_SHARE * length:
        problems.append(f"frozen picture for {frozen:.1f} of {length:.1f} s")
    if silent is not None and silent >= SILENT_SHARE * length:
        problems.append(f"silent for {silent:.1f} of {length:.1f} s, though the model makes sound")
    return QualityReport(ok=not problems, problems=problems, black_seconds=round(black, 2),
                         frozen_seconds=round(frozen, 2), silent_seconds=None if silent is None else round(silent, 2),
                         duration=info.duration, width=info.width, height=info.height, cpu_seconds=round(cpu, 3))


def record(settings: Settings, store: Store, key: str, path: Path) -> QualityReport | None:
    """Check a clip just downloaded and keep the report beside it (a `qc_flagged` event names a problem).

    Never fails the clip: it is paid and valid; a check that cannot run is logged and the clip left unchecked."""
    if settings.qc == "off":
        return None
    clip = store.clip(key)
    try:
        report = check(path, expect_sound=model_limits(clip.model).has_audio and settings.veo3_generate_audio)
    except Exception as exc:  # a check is advice: it never costs a paid clip its place in the cut
        log.warning("quality check of clip %s could not run: %s", key, exc)
        return None
    store.set_clip_qc(key, report.model_dump())
    if not report.ok:
        store.log("qc_flagged", f"clip {clip.index}: " + "; ".join(report.problems), clip.production_id, clip.index,
                  "clips")
    return report
