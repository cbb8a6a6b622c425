"""Repair, cost and assemble: keeping the ledger and the files in agreement, reading the spend, re-cutting.

`repair` is a chain of small rules over `VideoClip` models: the first rule that matches a clip decides
(fix it, or report what needs the user); then productions whose final is gone are queued again."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from reelcrew import artifacts
from reelcrew.errors import InputError
from reelcrew.files import owner_alive, sha256_file
from reelcrew.models import ClipStatus, ProductionStatus, VideoClip
from reelcrew.results import AssembleResult, CostReport, RepairReport
from reelcrew.service.ledger import open_store, production_folder
from reelcrew.settings import Settings
from reelcrew.store import Store
from reelcrew.video.retention import GONE, gone_message, past_retention

RELEASED = dict(lease_owner=None, lease_until=0.0)  # a repaired clip is nobody's claim any more
PRUNED = "file removed by `reelcrew prune`"  # removed on purpose: not a loss to repair


class ClipCheck:
    """One clip's facts as the repair rules need them."""

    def __init__(self, clip: VideoClip, now: float):
        self.clip = clip
        self.label = f"{clip.production_id} clip {clip.index}"
        self.gone = gone_message(clip.production_id, clip.index)
        self.expired = past_retention(clip.operation_name, clip.submitted_at, now)
        self.age = now - clip.submitted_at if clip.submitted_at else 0.0

    def file_lost(self) -> bool:
        path = Path(self.clip.path) if self.clip.path else None
        return (path is None or not path.exists()
                or bool(self.clip.sha256 and sha256_file(path) != self.clip.sha256))


def _done_but_file_lost(store: Store, check: ClipCheck, report: RepairReport, settings: Settings) -> bool:
    clip = check.clip
    if clip.status != ClipStatus.done or not check.file_lost() or (clip.error or "").startswith(PRUNED):
        return False
    if clip.artifact and clip.artifact.startswith("s3://") and artifacts.store_for(settings).exists(clip.artifact):
        return False  # its bytes are in the artifact store: the next render fetches them (checksum verified)
    if clip.operation_name and check.expired:  # nothing left to fetch: say so instead of trying
        store.update_clip(clip.key, status=ClipStatus.failed, path=None, **RELEASED,
                          error=f"file missing and {check.gone}")
        report.needs_you.append(f"{check.label}: file missing and {check.gone}")
    elif clip.operation_name:
        store.update_clip(clip.key, status=ClipStatus.submitted, path=None, **RELEASED,
                          error="file missing: will be downloaded again from its operation")
        report.fixed.append(f"{check.label}: file missing → re-attach {clip.operation_name} and download again")
    else:
        store.update_clip(clip.key, status=ClipStatus.pending, path=None, error="file missing: regenerate")
        report.fixed.append(f"{check.label}: file missing, no operation → marked for regeneration")
    return True


def _stuck_before_receipt(store: Store, check: ClipCheck, report: RepairReport, settings: Settings) -> bool:
    clip = check.clip
    if clip.status != ClipStatus.submitting or clip.operation_name or owner_alive(clip.lease_owner):
        return False
    store.update_clip(clip.key, status=ClipStatus.pending, possible_duplicate=True, lease_owner=None,
                      error="interrupted between submit and receipt: will resubmit, flagged possible duplicate")
    report.fixed.append(f"{check.label}: stuck in submitting (process gone) → pending, flagged possible duplicate")
    return True


def _past_retention(store: Store, check: ClipCheck, report: RepairReport, settings: Settings) -> bool:
    clip = check.clip
    at_veo = (ClipStatus.submitted, ClipStatus.downloading, ClipStatus.failed)
    if clip.status not in at_veo or not (check.expired or GONE in (clip.error or "")):
        return False
    if clip.status != ClipStatus.failed:
        store.update_clip(clip.key, status=ClipStatus.failed, **RELEASED, error=check.gone)
    report.needs_you.append(f"{check.label}: {check.gone}")
    return True


def _operation_too_old(store: Store, check: ClipCheck, report: RepairReport, settings: Settings) -> bool:
    clip = check.clip
    if clip.status not in (ClipStatus.submitted, ClipStatus.downloading) or check.age <= settings.operation_timeout:
        return False
    report.needs_you.append(f"{check.label}: operation {clip.operation_name} older than OPERATION_TIMEOUT; "
                            f"`reelcrew resume` polls it once more, `reelcrew retry` regenerates it")
    return True


def _download_failed(store: Store, check: ClipCheck, report: RepairReport, settings: Settings) -> bool:
    clip = check.clip
    if clip.status != ClipStatus.failed or not clip.operation_name or "download" not in (clip.error or ""):
        return False
    store.update_clip(clip.key, status=ClipStatus.submitted, **RELEASED)
    report.fixed.append(f"{check.label}: download had failed → re-attach and download again")
    return True


ClipRule = Callable[[Store, ClipCheck, RepairReport, Settings], bool]
CLIP_RULES: tuple[ClipRule, ...] = (_done_but_file_lost, _stuck_before_receipt, _past_retention,
                                    _operation_too_old, _download_failed)


def _requeue_lost_finals(settings: Settings, store: Store, report: RepairReport) -> None:
    for prod in store.all_productions():
        if store.stage(prod.id, "final") and not (production_folder(settings, prod) / "final.mp4").exists():
            store.delete_stage(prod.id, "final")
            store.set_production_status(prod.id, ProductionStatus.queued)
            report.fixed.append(f"{prod.id}: final.mp4 missing → will be rendered again")
        elif prod.status == ProductionStatus.done and any(c.status != ClipStatus.done
                                                          for c in store.production_clips(prod.id)):
            store.set_production_status(prod.id, ProductionStatus.queued)


def repair(settings: Settings, store: Store | None = None) -> RepairReport:
    """Replay the receipts journal, then find clips marked done whose file is missing or invalid and clips stuck
    past their timeout or retention; fix what can be fixed without paying, report the rest."""
    store = store or open_store(settings)
    report = RepairReport(fixed=list(store.replay_journal()))
    now = time.time()
    for clip in store.all_clips():
        check = ClipCheck(clip, now)
        any(rule(store, check, report, settings) for rule in CLIP_RULES)
    _requeue_lost_finals(settings, store, report)
    return report


def cost(settings: Settings, store: Store | None = None) -> CostReport:
    """The cost ledger grouped per production, per UTC day and per model, and the submits that may be charged
    twice (ambiguous outcomes and flagged duplicates)."""
    store = store or open_store(settings)
    rows = store.cost_rows()
    groups: dict[str, dict[str, float]] = {"production": {}, "day": {}, "model": {}}
    for r in rows:
        for name in groups:
            key = str(r["production_id" if name == "production" else name])
            groups[name][key] = round(groups[name].get(key, 0.0) + r["usd"], 9)  # writers' tokens cost micro-dollars
    doubtful = [r for r in store.receipts() if r["outcome"] == "ambiguous" or r["possible_duplicate"]]
    return CostReport(total_usd=round(sum(r["usd"] for r in rows), 9), **groups,
                      possible_extra_charges=len(doubtful))


def assemble_files(settings: Settings, clips: list[Path], captions: list[str], aspect: str,
                   output: Path) -> AssembleResult:
    """Cut loose clip files (with one caption each, or none) into `output`, its .srt and .ass; pays nothing."""
    from reelcrew.assemble import CutClip
    from reelcrew.assemble.hooks import load_edit
    from reelcrew.assemble.production import render_with_edit, spec_from_settings, write_sidecars
    from reelcrew.models import frame_size

    if not clips:
        raise InputError("nothing to assemble", "name a production id, or pass --clips a.mp4 b.mp4 ...")
    if captions and len(captions) != len(clips):
        raise InputError(f"{len(captions)} captions for {len(clips)} clips", "give one --captions value per clip")
    for clip in clips:
        if not clip.exists():
            raise InputError(f"clip {clip} does not exist", "check the paths given to --clips")
    load_edit(settings.render.edit)  # pre-flight: a missing module or function is a ConfigError (exit 2)
    width, height = frame_size(aspect, settings.resolution)
    cut = [CutClip(path=c, caption=(captions[i] if captions else "")) for i, c in enumerate(clips)]
    spec = spec_from_settings(settings, cut, width, height)
    result = render_with_edit(spec, output, settings, {"script": None, "seo": None, "production": None})
    write_sidecars(result, spec, output)
    return AssembleResult(output=output, subtitles=output.with_suffix(".srt"), duration=result.duration,
                          render_path=result.path)
