"""Receipt reconciliation: give a ledger back everything that was paid for, from whatever still says so.

After `reelcrew restore` (an older copy) or `reelcrew repair --ledger` (a corrupt file), the ledger may lack
operations submitted since. Every receipt anywhere is put back: the receipts journal (fsync'd beside the
ledger with every submit), each production's `manifest.json` (its clips, keys, prompts and every submit), its
stage files (script, SEO, prompts: so the same prompts, hence the same clip keys, are used) and its clip files
(adopted only when their sha256 matches the manifest's). A clip with an accepted receipt is re-attached and
polled by the next run, never resubmitted; one whose submit outcome is unknown is parked as `ambiguous`.
The ordinary `repair` rules (which hash every done clip's file) are left to `reelcrew repair`: a done clip whose
file is gone is fetched again by the next run anyway, so a restore's time grows with receipts, not with media.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ValidationError

from reelcrew.files import sha256_file
from reelcrew.models import Production, ProductionStatus, PromptList, Script, SeoPackage, VideoPrompt
from reelcrew.results import RecoveryReport
from reelcrew.settings import Settings
from reelcrew.store import Store

STAGE_FILES: tuple[tuple[str, type[BaseModel]], ...] = (("script", Script), ("seo", SeoPackage),
                                                         ("prompts", PromptList))


def journal_production_ids(journal: Path) -> set[str]:
    """The productions named in a receipts journal (their folders may hold manifests)."""
    ids: set[str] = set()
    if not journal.exists():
        return ids
    for line in journal.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            pid = json.loads(line).get("production_id")
        except (json.JSONDecodeError, AttributeError):
            continue
        if pid:
            ids.add(pid)
    return ids


def candidate_folders(settings: Settings, store: Store, journals: Iterable[Path],
                      known: Iterable[str | None] = ()) -> list[Path]:
    """Where production folders may be: the ledger's, the ones given (an older ledger's, a backup's), every
    folder of the output folder holding a manifest or stage files, and `<output>/<id>` for journalled ids."""
    out = settings.reelcrew_output_dir
    found: list[Path] = [Path(r["folder"]) for r in store.production_rows() if r["folder"]]
    found += [Path(f) for f in known if f]
    if out.is_dir():
        found += [d for d in sorted(out.iterdir())
                  if d.is_dir() and any((d / f"{name}.json").exists() for name in ("manifest", "prompts"))]
    for journal in journals:
        found += [out / pid for pid in sorted(journal_production_ids(journal))]
    unique: dict[Path, None] = {}
    for folder in found:
        if folder.is_dir():
            unique.setdefault(folder.resolve(), None)
    return list(unique)


def _read_manifest(folder: Path, report: RecoveryReport) -> dict | None:
    path = folder / "manifest.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        Production.model_validate(data["production"])
        return data
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
        report.needs_you.append(f"{path}: unreadable manifest ({type(exc).__name__}); its clips were not replayed")
        return None


def _adopt_stages(store: Store, pid: str, folder: Path, report: RecoveryReport) -> None:
    for stage, model in STAGE_FILES:
        path = folder / f"{stage}.json"
        if not path.exists():
            continue
        try:
            value = model.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            report.needs_you.append(f"{path}: not a valid {stage} file ({str(exc).splitlines()[0]}); not adopted")
            continue
        if store.adopt_stage(pid, stage, value.model_dump_json()):
            report.fixed.append(f"{pid}: {stage} stage taken back from {path.name} (not written again)")


def _finished_file(folder: Path, entry: dict) -> dict | None:
    """The clip's file as proof it is done: present, and its sha256 the one the manifest recorded."""
    if entry.get("status") != "done" or not entry.get("sha256"):
        return None
    for candidate in (entry.get("file"), folder / "clips" / f"clip-{int(entry['index']):02d}.mp4"):
        path = Path(candidate) if candidate else None
        if path is not None and path.exists() and sha256_file(path) == entry["sha256"]:
            return {"path": str(path.resolve()), "sha256": entry["sha256"], "duration": entry.get("duration") or 0.0,
                    "usd": entry.get("cost_usd") or 0.0}
    return None


def _replay_manifest(store: Store, folder: Path, manifest: dict, report: RecoveryReport) -> None:
    prod = Production.model_validate(manifest["production"])
    pid = prod.id
    adopted = prod.model_copy(update={"folder": str(folder),
                                      "status": ProductionStatus.cancelled if prod.status == ProductionStatus.cancelled
                                      else ProductionStatus.queued, "failed_stage": None, "error": None})
    if store.adopt_production(adopted):
        report.fixed.append(f"{pid}: production recreated from {folder / 'manifest.json'} (queued: "
                            "`reelcrew resume` finishes it)")
    _adopt_stages(store, pid, folder, report)
    model = manifest.get("model") or ""
    for entry in manifest.get("clips", []):
        try:
            prompt = VideoPrompt.model_validate(entry["prompt"])
            key, index = entry["key"], int(entry["index"])
        except (KeyError, TypeError, ValueError, ValidationError):
            report.needs_you.append(f"{folder / 'manifest.json'}: a clip entry without key, index or prompt")
            continue
        submits = [s for s in entry.get("submits", []) if isinstance(s, dict) and "at" in s and "outcome" in s]
        report.fixed += store.adopt_clip(pid, index, key, model, prompt, submits, _finished_file(folder, entry))


def reconcile(settings: Settings, store: Store, journals: Iterable[Path] = (), folders: Iterable[str | None] = (),
              report: RecoveryReport | None = None) -> RecoveryReport:
    """Put back every receipt the ledger lacks (journals first, then manifests, stage and clip files). Never
    submits anything: the next `reelcrew resume` re-attaches and polls."""
    report = report or RecoveryReport()
    journal_list = [j for j in dict.fromkeys([*journals, store.journal]) if j is not None]
    for journal in journal_list:
        report.fixed += store.replay_journal(journal)
    known = {r["id"] for r in store.production_rows()}
    for folder in candidate_folders(settings, store, journal_list, folders):
        manifest = _read_manifest(folder, report)
        if manifest is not None:
            _replay_manifest(store, folder, manifest, report)
            continue
        if (folder / "prompts.json").exists() or (folder / "script.json").exists():
            _adopt_stages(store, folder.name, folder, report)
            if folder.name not in known:
                report.needs_you.append(f"{folder}: stage files but no manifest.json, and the ledger has no "
                                        f"production {folder.name}; its stage files were taken back: run the same "
                                        "`reelcrew run --topic ...` command again to finish it (nothing is paid twice)")
    rows = {r["id"] for r in store.production_rows()}
    orphans = sorted({c.production_id for c in store.all_clips()} - rows)
    for pid in orphans:
        report.needs_you.append(f"clips of {pid} have receipts but neither the ledger nor a manifest.json knows the "
                                "production: run the same `reelcrew run --topic ...` command again to finish it "
                                "(its receipts are re-attached, never re-paid)")
    report.reattached = sum(1 for c in store.all_clips() if c.status.value == "submitted" and c.operation_name)
    report.counts = store.counts()
    return report
