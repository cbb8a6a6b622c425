"""Plan, estimate, approve, run, retry and status: the production verbs the CLI and the web API both call.

Each takes the settings (and optionally an open ledger, else it opens one) and returns a typed result from
`reelcrew.results`; nothing here prints or parses flags."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from reelcrew.errors import BudgetError, InputError
from reelcrew.files import owner_alive
from reelcrew.identity import MODE_FIX, identity_fields, mode_conflict, require_same_mode, settings_for
from reelcrew.models import STAGE_NAMES, ClipStatus, Production, ProductionStatus, PromptList
from reelcrew.pipeline import Pipeline, Progress, estimate_clips, retry_command, stopped_by_until
from reelcrew.results import (
    Approval,
    ApprovalPolicy,
    ClipReport,
    Estimate,
    ProductionReport,
    ProductionSummary,
    StatusReport,
)
from reelcrew.service.ledger import open_store, production_folder, require_production
from reelcrew.settings import Settings
from reelcrew.store import Store
from reelcrew.video.continuity_refs import billed_seconds

log = logging.getLogger("reelcrew.service")
WAITING = (ClipStatus.paused, ClipStatus.pending, ClipStatus.submitting, ClipStatus.submitted, ClipStatus.downloading)
RETRYABLE = ("failed", "filtered", "ambiguous", "paused")


def plan(settings: Settings, topics: list[str], store: Store | None = None) -> list[Production]:
    """The productions for these topics, recorded as `queued` (an existing one is returned as it is: resume)."""
    store = store or open_store(settings)
    return Pipeline(settings, store).plan(topics)


def estimate(settings: Settings, productions: list[Production], store: Store | None = None) -> Estimate:
    """What running these productions to the end would still pay: clips from their prompts when written,
    otherwise `scenes` clips of `clip_seconds` each, plus the writers' tokens for productions not yet written
    (a typical production's tokens, priced from config/pipeline.yaml), the SEO's search grounding where its SEO is
    not written yet (SEO_GROUNDING), and the worst case of the Maker's rewrites of filtered prompts. Mock mode is
    free."""
    from reelcrew.writer_quota import grounding_estimate_usd, writer_estimate_usd

    store = store or open_store(settings)
    unwritten = sum(1 for prod in productions if store.stage(prod.id, "prompts") is None)
    writers = round(writer_estimate_usd(settings, unwritten), 4)
    unsearched = sum(1 for prod in productions  # a search made (and paid) before is reused, never made again
                     if store.stage(prod.id, "seo") is None and store.stage(prod.id, "grounding") is None)
    grounding = round(grounding_estimate_usd(settings, unsearched), 4)
    if settings.veo3_mock_mode:
        return Estimate(writers_usd=writers, grounding_usd=grounding)
    todo: list[tuple[str, float, str]] = []
    for prod in productions:
        own = settings_for(settings, prod)  # its recorded model, resolution, clip length and mode
        if own.veo3_mock_mode:
            continue
        saved = store.stage(prod.id, "prompts")
        if saved is None:
            todo += [(own.veo3_model, billed_seconds(own, index, own.clip_seconds), own.resolution)
                     for index in range(1, prod.scenes + 1)]  # an extension may bill its whole output
            continue
        done = {c.index for c in store.production_clips(prod.id) if c.status == ClipStatus.done}
        todo += [(own.veo3_model, billed_seconds(own, p.index, p.duration), p.resolution)
                 for p in PromptList.model_validate_json(saved).prompts if p.index not in done]
    return estimate_clips(settings, todo).model_copy(update={"writers_usd": writers, "grounding_usd": grounding})


def approve(settings: Settings, estimate: Estimate, policy: ApprovalPolicy, store: Store | None = None,
            production_ids: tuple[str, ...] = ()) -> Approval:
    """The approval step before the first paid submit: the budget cap, then `--yes` or the question.

    Raises BudgetError (nothing is submitted) when over budget or not approved; records the approval."""
    if settings.veo3_mock_mode or not estimate.clips:
        return Approval(estimate=estimate, approved_by="free")
    cap = policy.budget_usd
    if cap is not None and estimate.usd > cap + 1e-9:
        raise BudgetError(f"this run would cost about ${estimate.usd:.2f} ({estimate.clips} clips, "
                          f"{estimate.seconds:.0f} s of video), over {policy.budget_name} {cap:.2f}; "
                          "nothing was submitted",
                          policy.budget_fix)
    if policy.announce:
        policy.announce(estimate)
    if policy.yes:
        by = "--yes"
    elif policy.ask is not None and policy.ask(estimate):
        by = "prompt"
    else:
        raise BudgetError("not confirmed: nothing was submitted", "run again and answer yes, or pass --yes")
    if store is not None:
        for pid in production_ids or (None,):
            store.log("approval", f"${estimate.usd:.2f} for {estimate.clips} clip(s) approved by {by}", pid)
    return Approval(estimate=estimate, approved_by=by)


def run(settings: Settings, productions: list[Production], until: str = "final", progress: Progress | None = None,
        policy: ApprovalPolicy | None = None, store: Store | None = None,
        retry_clips: set[tuple[str, int]] | None = None, recut: bool = False) -> list[ProductionSummary]:
    """Run the productions' stages up to `until`; the approval step runs before the first paid submit.

    Each production runs with its own recorded identity and mode (reelcrew.identity), whatever today's settings
    say; productions that share them run together. One these settings cannot finish (mock mode on a production
    of paid clips) is left alone with a note. `recut` renders the final again where one was rendered."""
    store = store or open_store(settings)
    policy = policy or ApprovalPolicy()
    notes: dict[str, str] = {}
    groups: dict[str, tuple[Settings, list[Production]]] = {}
    for prod in productions:
        store.upsert_production(prod.model_copy(update=identity_fields(settings)))  # an older row: record them
        prod = store.production(prod.id) or prod
        conflict = mode_conflict(settings, prod)
        if conflict:
            notes[prod.id] = f"left alone: {conflict}; to finish it, {MODE_FIX}"
            continue
        own = settings_for(settings, prod)
        groups.setdefault(json.dumps(identity_fields(own), sort_keys=True), (own, []))[1].append(prod)
    from reelcrew.runners.batch import run_batch  # the local runner: the batch pipelined (reelcrew.tasks)

    approval = lambda own, ids: _approval(own, policy, store, ids)  # noqa: E731
    notes.update(run_batch(settings, store, list(groups.values()), until, progress or Progress(), policy, approval,
                           retry_clips, recut))
    return [summarize(settings, store, p.id, notes.get(p.id)) for p in productions]


def _approval(settings: Settings, policy: ApprovalPolicy, store: Store, ids: tuple[str, ...]
              ) -> Callable[[Estimate], Approval]:
    """The approval step of one group of productions (a mock group approves itself: it is free)."""
    return lambda estimate: approve(settings, estimate, policy, store, ids)


def adopt_edits(settings: Settings, productions: list[Production], store: Store | None = None,
                notify: Callable[[str], None] = log.info,
                allow_new_clips: set[tuple[str, int]] | None = None) -> None:
    """Adopt the productions' edited stage files (script.json, seo.json, prompts.json) into the ledger, each
    recorded as an `edit` event, before a verb works on them. An invalid edit raises InputError (exit 2) and
    nothing is changed. A changed clip request is adopted only for a clip not submitted yet, or one in
    `allow_new_clips` (what `retry` regenerates); others are told through `notify` with the command to use."""
    from reelcrew.edits import adopt_edits as adopt

    store = store or open_store(settings)
    adopt(settings, store, productions, lambda prod: production_folder(settings, prod), allow_new_clips, notify)


def unfinished(settings: Settings, store: Store | None = None) -> list[Production]:
    """What `resume` works on: every production not done, incomplete (`retry` brings its scenes back) or cancelled."""
    store = store or open_store(settings)
    settled = (ProductionStatus.done, ProductionStatus.incomplete, ProductionStatus.cancelled)
    return [p for p in store.all_productions() if p.status not in settled]


def prepare_retry(settings: Settings, production_id: str, clip: int | None = None, prompt: str | None = None,
                  store: Store | None = None, notify: Callable[[str], None] = log.info
                  ) -> tuple[Production, set[tuple[str, int]]]:
    """Pick the clips to make again (the given one, else every failed, filtered, ambiguous or paused one),
    adopt the edited stage files (a clip to make again takes its edited prompt from prompts.json),
    record an edited prompt, and drop the final so it is cut again. Returns what `run` needs."""
    store = store or open_store(settings)
    prod = require_production(store, production_id)
    require_same_mode(settings, prod)
    if prod.status == ProductionStatus.cancelled:  # an explicit retry starts a cancelled production again
        store.uncancel(production_id)
        prod = require_production(store, production_id)
    clips = store.production_clips(production_id)
    targets = {c.index for c in clips if c.status.value in RETRYABLE}
    if clip is not None:
        if clip not in {c.index for c in clips}:
            raise InputError(f"production {production_id} has no clip {clip}", f"choose 1..{len(clips)}")
        targets = {clip}
    adopt_edits(settings, [prod], store, notify, {(production_id, i) for i in targets})
    if prompt is not None:
        if clip is None:
            raise InputError("--prompt needs --clip", "say which clip the new prompt is for")
        saved = store.stage(production_id, "prompts")
        if saved is None:
            raise InputError(f"production {production_id} has no prompts yet", "run it to the prompts stage first")
        prompts = PromptList.model_validate_json(saved)
        prompts.prompts[clip - 1].prompt = prompt
        store.save_stage(production_id, "prompts", prompts.model_dump_json())
        (production_folder(settings, prod) / "prompts.json").unlink(missing_ok=True)
    store.delete_stage(production_id, "final")
    return prod, {(production_id, i) for i in targets}


def retry(settings: Settings, production_id: str, clip: int | None = None, prompt: str | None = None,
          progress: Progress | None = None, policy: ApprovalPolicy | None = None,
          store: Store | None = None) -> list[ProductionSummary]:
    """Regenerate a production's failed, filtered or ambiguous clips (or one, with a new prompt), then re-cut."""
    store = store or open_store(settings)
    prod, targets = prepare_retry(settings, production_id, clip, prompt, store)
    return run(settings, [prod], progress=progress, policy=policy, store=store, retry_clips=targets)


def cancel(settings: Settings, production_id: str, store: Store | None = None, actor: str | None = None
           ) -> ProductionSummary:
    """Stop a production: nothing new is submitted for it (the ledger refuses the claim), while operations
    already at Veo finish in the process that follows them and are recorded (they are paid for). A run
    working on it writes and cuts nothing more; `reelcrew retry` starts it again."""
    store = store or open_store(settings)
    prod = require_production(store, production_id)
    if prod.status in (ProductionStatus.done, ProductionStatus.incomplete):
        raise InputError(f"production {production_id} is {prod.status.value}: there is nothing left to cancel",
                         f"`reelcrew status {production_id}` shows it; its files are in {prod.folder}")
    if prod.status != ProductionStatus.cancelled:
        live = prod.status == ProductionStatus.running and owner_alive(store.production_owner(production_id))
        at_veo = [c for c in store.production_clips(production_id)
                  if c.status in (ClipStatus.submitting, ClipStatus.submitted, ClipStatus.downloading)]
        note = "cancelled: nothing new is submitted"
        if at_veo:
            note += (f"; {len(at_veo)} operation(s) already at Veo "
                     + ("finish in the running process and are recorded" if live else
                        f"keep their receipts: `reelcrew retry {production_id}` collects them without paying again"))
        store.set_production_status(production_id, ProductionStatus.cancelled, current_stage(store, production_id),
                                    note)
        if actor:  # who asked, for the API's audit trail
            store.log_action("cancelled", f"{note} (by {actor})", actor, production_id)
        else:
            store.log("cancelled", note, production_id)
    return summarize(settings, store, production_id)


def current_stage(store: Store, pid: str) -> str:
    """The first stage without output (`clips` once the prompts exist), or `final` once the final is rendered."""
    for stage in ("script", "seo", "prompts"):
        if store.stage(pid, stage) is None:
            return stage
    return "final" if store.stage(pid, "final") else "clips"


def summarize(settings: Settings, store: Store, pid: str, note: str | None = None) -> ProductionSummary:
    """One production as it is now. `interrupted` only when a `running` production's owner process is dead;
    `final` only when the ledger holds this production's current cut and its file is there."""
    prod = require_production(store, pid)
    clips = store.production_clips(pid)
    folder = production_folder(settings, prod)
    final = folder / "final.mp4"
    count = lambda *states: sum(1 for c in clips if c.status in states)  # noqa: E731
    status = prod.status.value
    if prod.status == ProductionStatus.running and not owner_alive(store.production_owner(pid)):
        status = "interrupted"  # its process died (crash, kill -9): `reelcrew resume` finishes it
    stage = prod.failed_stage if prod.failed_stage in STAGE_NAMES else current_stage(store, pid)
    cut = store.stage(pid, "final")
    current_final = final.exists() and cut is not None
    note = note or _final_note(pid, final, cut, status)
    missing = [c for c in clips if c.status in (ClipStatus.filtered, ClipStatus.failed)]
    incomplete = prod.status == ProductionStatus.incomplete
    mock = settings.veo3_mock_mode or any((c.operation_name or "").startswith("mock/") for c in clips)
    return ProductionSummary(
        id=pid, topic=prod.topic, status=status, stage=stage, failed_stage=prod.failed_stage, error=prod.error,
        clips_done=count(ClipStatus.done), clips_filtered=count(ClipStatus.filtered),
        clips_failed=count(ClipStatus.failed, ClipStatus.ambiguous), clips_paused=count(*WAITING),
        cost_usd=round(sum(c.cost_usd for c in clips), 4), llm_answers=store.llm_answers(pid),
        final=str(final) if current_final else None, folder=str(folder), note=note,
        final_artifact=store.production_artifacts(pid).get("final.mp4", {}).get("ref") if cut else None,
        scenes_missing=[c.prompt.scene_index for c in missing] if incomplete else [],
        retry_commands=[retry_command(pid, c.index, c.status == ClipStatus.filtered, mock)
                        for c in missing] if incomplete else [],
        stopped_after=stopped_by_until(prod.status, prod.failed_stage, prod.error),
        continuity=prod.continuity or "none")


def _final_note(pid: str, final: Path, cut: str | None, status: str) -> str | None:
    """Why a final.mp4 in the folder is not listed: it is from an earlier cut, or the listed one was deleted."""
    if cut is None and final.exists():
        return (f"{final} is from an earlier cut, not this production's current state "
                f"(`reelcrew assemble {pid}` cuts it again from the clips)")
    if cut is not None and not final.exists() and status in ("done", "incomplete"):
        return f"final.mp4 was deleted from the folder: `reelcrew assemble {pid}` cuts it again from the clips"
    return None


def status(settings: Settings, production_id: str | None = None, store: Store | None = None) -> StatusReport:
    """What the ledger knows: every production (or one), with its clips."""
    store = store or open_store(settings)
    if production_id:
        require_production(store, production_id)
    ids = [production_id] if production_id else [p.id for p in store.all_productions()]
    reports = []
    for pid in ids:
        clips = [ClipReport(index=c.index, status=c.status.value, operation=c.operation_name, error=c.error,
                            retries=c.retries, possible_duplicate=c.possible_duplicate,
                            artifact=c.artifact if c.status == ClipStatus.done else None, sha256=c.sha256, qc=c.qc,
                            starts_from=c.prompt.first_frame.from_index if c.prompt.first_frame else None)
                 for c in store.production_clips(pid)]
        reports.append(ProductionReport(**summarize(settings, store, pid).model_dump(), clips=clips))
    return StatusReport(productions=reports)


def exit_code(summaries: list[ProductionSummary]) -> int:
    """1 when a production failed, is incomplete, is waiting, was interrupted or cancelled; 0 otherwise. A production
    that stopped where `--until` asked, with no clip failed or filtered, is what was asked for: 0."""
    unsettled = {"failed", "incomplete", "paused", "interrupted", "awaiting_approval", "cancelled"}
    return 1 if any(s.status in unsettled and not _as_asked(s) for s in summaries) else 0


def _as_asked(summary: ProductionSummary) -> bool:
    return bool(summary.stopped_after) and not (summary.clips_failed or summary.clips_filtered)


def folder_of(settings: Settings, store: Store, production_id: str) -> Path:
    return production_folder(settings, require_production(store, production_id))
