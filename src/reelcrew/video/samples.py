"""Several videos for one clip (VEO3_SAMPLE_COUNT > 1, Vertex AI): all fetched, each checked, the best one kept.

Vertex makes up to four videos per request (`sampleCount`) and bills every one it makes; its safety filter may
withhold some (`raiMediaFilteredCount`, not billed). Veo gives no ranking, so the quality check (video/qc.py)
is the judge: it runs on every sample even when the `qc` setting is `off` (that setting decides what a flagged
*clip* does; paying for samples without looking at them would be a blind pick).

The choice, in this order: a sample that fails validation (duration, shape, decoding) is never chosen; a clean
sample before one whose check could not run, before a flagged one; then the fewest black, frozen and silent
seconds; then Veo's own order (the first). The chosen sample becomes the clip (`clips/clip-01.mp4`); the others
stay beside it (`clips/clip-01.sample-2.mp4`, numbered as Veo returned them) or are deleted
(VEO3_KEEP_SAMPLES=false). Only the chosen one goes to the artifact store. Which was chosen and why is kept
with the clip's quality check in the ledger (`qc.samples`, `qc.chosen_sample`, `qc.why`), so it reaches the
manifest, `reelcrew status --json` and the API, and a `sample_chosen` event says it too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reelcrew.media import MediaError
from reelcrew.video import qc

if TYPE_CHECKING:
    from reelcrew.models import VideoClip
    from reelcrew.store import Store
    from reelcrew.video.backends import Outcome

log = logging.getLogger("reelcrew.video.samples")


@dataclass
class Sample:
    """One video of the request: where it was fetched, whether it is valid, what the check saw."""

    number: int  # 1-based, in Veo's order
    part: Path
    invalid: str | None = None  # why validation refused it (never chosen)
    report: qc.QualityReport | None = None  # None: the check could not run (or the sample is invalid)
    info: Any = None  # the probe of a valid sample (media.probe)

    def rank(self) -> tuple[int, float, int]:
        """Lower is better: clean, unchecked, flagged; then the seconds that are wrong; then Veo's order."""
        if self.report is None:
            return (1, 0.0, self.number)
        bad = self.report.black_seconds + self.report.frozen_seconds + (self.report.silent_seconds or 0.0)
        return (0 if self.report.ok else 2, bad, self.number)

    def summary(self) -> dict[str, Any]:
        state = "invalid" if self.invalid else "unchecked" if self.report is None else \
            "clean" if self.report.ok else "flagged"
        out: dict[str, Any] = {"sample": self.number, "state": state}
        if self.invalid:
            out["problems"] = [self.invalid]
        elif self.report is not None:
            out.update(problems=self.report.problems, black_seconds=self.report.black_seconds,
                       frozen_seconds=self.report.frozen_seconds, silent_seconds=self.report.silent_seconds,
                       cpu_seconds=self.report.cpu_seconds)
        return out


@dataclass
class Choice:
    """The samples of one clip and the one chosen; `generated` is what Veo made and bills."""

    samples: list[Sample]
    filtered: int = 0  # withheld by Veo's safety filter: not billed
    withheld: str | None = None
    chosen: Sample | None = None
    why: str = ""
    files: dict[int, str] = field(default_factory=dict)  # sample number → where it was kept (after `place`)

    @property
    def generated(self) -> int:
        return len(self.samples)

    def as_qc(self) -> dict[str, Any]:
        """The chosen sample's quality report, with every sample's and the reason of the choice."""
        assert self.chosen is not None
        base = self.chosen.report.model_dump() if self.chosen.report else {"ok": None, "problems": []}
        rows = []
        for sample in self.samples:
            row = sample.summary()
            if sample.number in self.files:
                row["file"] = self.files[sample.number]
            rows.append(row)
        return {**base, "chosen_sample": self.chosen.number, "why": self.why, "samples": rows,
                "samples_filtered": self.filtered, **({"withheld": self.withheld} if self.withheld else {})}


def sample_path(dest: Path, number: int) -> Path:
    """Where an unchosen sample is kept: beside the clip, `clip-01.sample-2.mp4`."""
    return dest.with_name(f"{dest.stem}.sample-{number}{dest.suffix}")


def fetch(outcome: Outcome, tmp: Path, download: Callable[[Outcome, Path], None],
          validate: Callable[[Path], Any], expect_sound: bool) -> Choice:
    """Fetch and check every sample, leave the chosen one at `tmp` and the others at `<tmp>.sample-N`.

    A download error (the network, a full disk) raises, as for one clip, so the caller's retries fetch them all
    again; a sample that fails validation is only left out. MediaError when no sample is valid."""
    videos = outcome.samples or [outcome.video]
    samples: list[Sample] = []
    try:
        for number in range(1, len(videos) + 1):
            sample = Sample(number, tmp.with_name(f"{tmp.name}.sample-{number}"))
            samples.append(sample)
            download(outcome.sample(number), sample.part)
            try:
                sample.info = validate(sample.part)
            except MediaError as exc:
                sample.invalid = f"invalid: {exc}"
                continue
            try:
                sample.report = qc.check(sample.part, expect_sound)
            except Exception as exc:  # a check is advice: the sample stays a candidate, ranked after clean ones
                log.warning("quality check of sample %d could not run: %s", number, exc)
        choice = choose(samples, outcome.samples_filtered, outcome.withheld)
        assert choice.chosen is not None
        os.replace(choice.chosen.part, tmp)
        choice.chosen.part = tmp
        return choice
    except BaseException:
        for sample in samples:
            if sample.part != tmp:
                sample.part.unlink(missing_ok=True)
        raise


def choose(samples: list[Sample], filtered: int = 0, withheld: str | None = None) -> Choice:
    """The best valid sample (see the module's docstring for the order), with the reason in words."""
    valid = [s for s in samples if not s.invalid]
    if not valid:
        raise MediaError("no sample is valid: " + "; ".join(f"sample {s.number} {s.invalid}" for s in samples))
    best = min(valid, key=Sample.rank)
    others = [s for s in samples if s is not best]
    if best.report is not None and best.report.ok:
        passed = [s for s in others if s.number < best.number]  # why the ones before it were not taken
        reasons = "; ".join(f"sample {s.number}: {', '.join(s.summary().get('problems') or [s.summary()['state']])}"
                            for s in passed)
        why = f"sample {best.number} of {len(samples)} is clean" + (f" ({reasons})" if reasons else "")
    elif best.report is None:
        why = f"sample {best.number} of {len(samples)}: no sample is clean and its check could not run"
    else:
        why = (f"no sample is clean; sample {best.number} of {len(samples)} has the fewest bad seconds "
               f"({'; '.join(best.report.problems)})")
    if filtered:
        why += f"; {filtered} more withheld by Veo's safety filter (not billed)"
    return Choice(samples=samples, filtered=filtered, withheld=withheld, chosen=best, why=why)


def place(choice: Choice, dest: Path, keep: bool) -> None:
    """The unchosen samples beside the clip (or deleted); `choice.files` says where each one is."""
    assert choice.chosen is not None
    choice.files[choice.chosen.number] = dest.name
    for sample in choice.samples:
        if sample is choice.chosen or not sample.part.exists():
            continue
        if keep and not sample.invalid:
            target = sample_path(dest, sample.number)
            os.replace(sample.part, target)
            choice.files[sample.number] = target.name
        else:
            sample.part.unlink(missing_ok=True)


def record(store: Store, clip: VideoClip, choice: Choice) -> None:
    """The choice in the ledger, beside the clip's quality check; a flagged choice is a `qc_flagged` event too."""
    assert choice.chosen is not None
    report = choice.as_qc()
    store.set_clip_qc(clip.key, report)
    store.log("sample_chosen", f"clip {clip.index}: {choice.why}", clip.production_id, clip.index, "clips")
    if report.get("ok") is False:
        store.log("qc_flagged", f"clip {clip.index}: " + "; ".join(report["problems"]), clip.production_id,
                  clip.index, "clips")
