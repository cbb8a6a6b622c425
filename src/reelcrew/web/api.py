"""The REST API under /api: each route checks the caller's role, calls the studio (the service layer and the
embedded runner) and shapes the answer. Heavy work never runs here: a job is handed to the pool and the route
answers at once."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Header, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pyrate_limiter import Duration, Limiter, Rate

from reelcrew import service
from reelcrew.errors import BudgetError, InputError
from reelcrew.models import STAGE_NAMES, ClipStatus, ProductionStatus, PromptList
from reelcrew.service.ledger import production_folder
from reelcrew.settings import SubtitleStyle, TransitionStyle, WatermarkStyle
from reelcrew.store import utc_day
from reelcrew.web import events
from reelcrew.web.auth import Caller, create_token, require
from reelcrew.web.errors import NotFound, RateLimited
from reelcrew.web.files import media_type, production_file
from reelcrew.web.schemas import AssembleRequest, CreateRequest, PromptEdit, RetryRequest, TokenRequest
from reelcrew.web.studio import Busy, Studio, plan_request

router = APIRouter(prefix="/api")
Viewer = Annotated[Caller, Depends(require("viewer"))]
Operator = Annotated[Caller, Depends(require("operator"))]
Admin = Annotated[Caller, Depends(require("admin"))]
FILE_NAMES = ("final.mp4", "thumbnail.jpg", "final.srt", "metadata.json")
CLIP_FIXES = {"filtered": "edit the prompt and retry this clip (a filtered generation is not charged)",
              "failed": "retry this clip", "ambiguous": "retry only if you accept that Veo may charge it twice",
              "paused": "resume the production when the quota or budget allows"}
UPLOAD_TYPES = {"audio/mpeg": "mp3", "audio/wav": "wav", "audio/x-wav": "wav", "audio/mp4": "m4a", "audio/aac": "aac",
                "audio/ogg": "ogg", "image/png": "png", "image/jpeg": "jpg"}
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


def studio_of(request: Request) -> Studio:
    return request.app.state.studio


# -- productions ---------------------------------------------------------------------------------
def stage_progress(summary: dict, clips_total: int) -> float:
    """0..1 for the dashboard's bar: the stages done, the clips stage counted by its clips."""
    if summary["status"] in ("done", "incomplete"):
        return 1.0
    index = STAGE_NAMES.index(summary["stage"]) if summary["stage"] in STAGE_NAMES else 0
    part = 0.0
    if summary["stage"] == "clips" and clips_total:
        part = (summary["clips_done"] + summary["clips_filtered"] + summary["clips_failed"]) / clips_total
    return round(min(1.0, (index + part) / len(STAGE_NAMES)), 3)


def summary_json(studio: Studio, pid: str) -> dict:
    summary = service.summarize(studio.production_settings(pid), studio.store, pid).as_dict()
    summary.pop("folder", None)  # a server path is nobody's business
    summary.pop("final", None)
    if not str(summary.get("final_artifact") or "").startswith("s3://"):  # a local reference is a server path too
        summary.pop("final_artifact", None)
    clips = studio.store.production_clips(pid)
    summary["clips_total"] = len(clips)
    summary["progress"] = stage_progress(summary, len(clips))
    summary["busy"] = studio.busy(pid)
    return summary


def stage_json(studio: Studio, pid: str, stage: str) -> Any:
    text = studio.store.stage(pid, stage)
    return json.loads(text) if text else None


def detail_json(studio: Studio, pid: str) -> dict:
    prod = service.require_production(studio.store, pid)
    settings = studio.production_settings(pid)
    body = summary_json(studio, pid)
    body.update(language=prod.language, scenes=prod.scenes, aspect_ratio=prod.aspect_ratio,
                options=studio.options(pid), script=stage_json(studio, pid, "script"),
                seo=stage_json(studio, pid, "seo"), prompts=stage_json(studio, pid, "prompts"))
    body["clips"] = [{"index": c.index, "status": c.status.value, "error": c.error,
                      "fix": CLIP_FIXES.get(c.status.value) if c.status != ClipStatus.done else None,
                      "cost_usd": c.cost_usd, "operation": c.operation_name, "retries": c.retries,
                      "possible_duplicate": c.possible_duplicate, "prompt": c.prompt.prompt, "qc": c.qc,
                      "starts_from": c.prompt.first_frame.from_index if c.prompt.first_frame else None,
                      "file": f"clips/clip-{c.index:02d}.mp4" if c.status == ClipStatus.done else None,
                      "artifact": c.artifact if (c.artifact or "").startswith("s3://") else None,
                      "sha256": c.sha256 if c.status == ClipStatus.done else None}
                     for c in studio.store.production_clips(pid)]
    body["estimate"] = studio.estimate(pid).model_dump()
    folder = production_folder(settings, prod)
    final_ready = bool(studio.store.stage(pid, "final"))
    body["files"] = [name for name in FILE_NAMES if final_ready and (folder / name).is_file()]
    row = studio.store.web_request(pid) or {}
    body["created_by"], body["approved_by"] = row.get("created_by"), row.get("approved_by")
    return body


_limiters: dict[str, Limiter] = {}


def rate_limit_create(request: Request, caller: Caller) -> None:
    per_minute = request.app.state.create_rate
    limiter = _limiters.setdefault(f"{id(request.app)}:{caller.name}", Limiter(Rate(per_minute, Duration.MINUTE)))
    if not limiter.try_acquire(caller.name, blocking=False):
        raise RateLimited(f"token {caller.name!r} made more than {per_minute} creates in a minute",
                   "wait a minute, or raise REELCREW_CREATE_RATE")


@router.post("/productions", status_code=202, summary="Create productions (one per topic); answers at once")
def create(body: CreateRequest, request: Request, caller: Operator,
           idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> JSONResponse:
    studio = studio_of(request)
    digest = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    if idempotency_key:
        seen = studio.store.idempotent_answer(caller.name, idempotency_key)
        if seen is not None:
            if seen["request_sha256"] != digest:
                raise Busy("this Idempotency-Key was used with another request",
                           "send a new Idempotency-Key for a different request")
            return JSONResponse(json.loads(seen["body"]), seen["status_code"])
    rate_limit_create(request, caller)
    options = body.model_dump(exclude={"topics"})
    prods, new = plan_request(studio, body.topics, options, caller.name)
    for prod in prods:
        current = studio.store.production(prod.id)
        if current and current.status not in (ProductionStatus.done, ProductionStatus.incomplete,
                                               ProductionStatus.cancelled, ProductionStatus.awaiting_approval
                                               ) and not studio.busy(prod.id):
            studio.start(prod.id)
    answer = {"productions": [{"id": p.id, "topic": p.topic, "new": p.id in new,
                               "status": (studio.store.production(p.id) or p).status.value} for p in prods]}
    code = 202 if new else 200
    if idempotency_key:
        studio.store.remember_answer(caller.name, idempotency_key, digest, code, json.dumps(answer))
    return JSONResponse(answer, code)


@router.get("/productions", summary="List productions (filter by status, paging)")
def list_productions(request: Request, caller: Viewer, status: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50,
                     offset: Annotated[int, Query(ge=0)] = 0) -> dict:
    studio = studio_of(request)
    prods = list(reversed(studio.store.all_productions()))
    items = [summary_json(studio, p.id) for p in prods]
    if status:
        items = [i for i in items if i["status"] == status]
    return {"total": len(items), "limit": limit, "offset": offset, "productions": items[offset:offset + limit]}


@router.get("/productions/{pid}", summary="One production: stages, script, SEO, prompts, clips, estimate, files")
def get_production(pid: str, request: Request, caller: Viewer) -> dict:
    return detail_json(studio_of(request), pid)


@router.post("/productions/{pid}/approve", summary="Approve the estimate: the clips start")
def approve(pid: str, request: Request, caller: Operator) -> dict:
    studio = studio_of(request)
    prod = service.require_production(studio.store, pid)
    if caller.daily_budget_usd is not None:
        estimate = studio.estimate(prod.id)
        spent = studio.store.spent_by_creator(caller.name, utc_day())
        if spent + estimate.usd > caller.daily_budget_usd + 1e-9:
            raise BudgetError(f"token {caller.name!r} has a daily budget of ${caller.daily_budget_usd:.2f}: "
                              f"${spent:.2f} spent today, this needs ${estimate.usd:.2f}",
                              "ask an admin to approve it, or wait for the next UTC day")
    estimate = studio.approve(pid, caller.name)
    return {"id": pid, "status": "queued", "approved_by": caller.name, "estimate": estimate.model_dump()}


@router.patch("/productions/{pid}/prompts/{index}", summary="Edit a prompt before approval or before a retry")
def edit_prompt(pid: str, index: int, body: PromptEdit, request: Request, caller: Operator) -> dict:
    studio = studio_of(request)
    prod = service.require_production(studio.store, pid)
    if studio.busy(pid) or prod.status == ProductionStatus.running:
        raise Busy(f"production {pid} is running", "edit a prompt while it awaits approval or after it stopped")
    saved = studio.store.stage(pid, "prompts")
    if saved is None:
        raise Busy(f"production {pid} has no prompts yet", "wait until it awaits approval")
    prompts = PromptList.model_validate_json(saved)
    match = [p for p in prompts.prompts if p.index == index]
    if not match:
        raise NotFound(f"production {pid} has no prompt {index}",
                       f"choose an index from 1 to {len(prompts.prompts)}")
    clip = next((c for c in studio.store.production_clips(pid) if c.index == index), None)
    if clip is not None and clip.status == ClipStatus.done and prod.status != ProductionStatus.awaiting_approval:
        raise Busy(f"clip {index} is already made", "retry the clip with the new prompt instead")
    match[0].prompt = body.prompt
    if body.negative_prompt is not None:
        match[0].negative_prompt = body.negative_prompt
    studio.store.save_stage(pid, "prompts", prompts.model_dump_json())
    folder = production_folder(studio.production_settings(pid), prod)
    (folder / "prompts.json").unlink(missing_ok=True)  # rewritten from the ledger on the next run
    studio.store.log_action("edit", f"prompt {index} edited by {caller.name}", caller.name, pid, index, "prompts")
    return {"id": pid, "index": index, "prompt": match[0].prompt}


@router.post("/productions/{pid}/clips/{index}/retry", status_code=202, summary="Make a clip again")
def retry_clip(pid: str, index: int, request: Request, caller: Operator, body: RetryRequest | None = None) -> dict:
    studio_of(request).retry(pid, index, body.prompt if body else None, caller.name)
    return {"id": pid, "clip": index, "status": "queued"}


@router.post("/productions/{pid}/resume", status_code=202, summary="Resume an unfinished production")
def resume(pid: str, request: Request, caller: Operator) -> dict:
    studio_of(request).resume(pid, caller.name)
    return {"id": pid, "status": "queued"}


def upload_path(request: Request, name: str | None) -> str | None:
    if name is None:
        return None
    path = request.app.state.uploads / name
    if not path.is_file():
        raise NotFound(f"no upload {name}", "upload the file first with POST /api/uploads")
    return str(path)


@router.post("/productions/{pid}/assemble", status_code=202, summary="Re-cut from the clips made (no new spend)")
def assemble(pid: str, request: Request, caller: Operator, body: AssembleRequest | None = None) -> dict:
    studio = studio_of(request)
    base = studio.production_settings(pid)
    body = body or AssembleRequest()
    overrides: dict[str, Any] = {}
    for name, model in (("subtitles", SubtitleStyle), ("watermark", WatermarkStyle),
                        ("transitions", TransitionStyle)):
        given = getattr(body, name)
        if given is None:
            continue
        if {"font", "image"} & set(given):
            raise InputError(f"{name}: a server path cannot be given", "upload a logo with POST /api/uploads "
                             "and pass its id as logo_upload")
        try:
            overrides[name] = model.model_validate({**getattr(base, name).model_dump(), **given})
        except ValueError as exc:
            raise InputError(f"{name}: {exc}".splitlines()[0], f"correct the {name} settings (see /docs)") from None
    logo = upload_path(request, body.logo_upload)
    if logo:
        overrides["watermark"] = overrides.get("watermark", base.watermark).model_copy(update={"image": logo})
    music = upload_path(request, body.music_upload)
    if music:
        overrides["music"] = base.music.model_copy(update={"file": music})
    studio.assemble(pid, caller.name, overrides)
    return {"id": pid, "status": "queued"}


@router.delete("/productions/{pid}", summary="Cancel: in-flight operations finish, nothing new is submitted")
def cancel(pid: str, request: Request, caller: Operator) -> dict:
    changed = studio_of(request).cancel(pid, caller.name)
    return {"id": pid, "status": "cancelled", "changed": changed}


@router.get("/productions/{pid}/files/{name:path}", summary="A production's file (HTTP Range supported)")
def get_file(pid: str, name: str, request: Request, caller: Viewer) -> FileResponse:
    studio = studio_of(request)
    prod = service.require_production(studio.store, pid)
    path = production_file(production_folder(studio.production_settings(pid), prod), name)
    return FileResponse(path, media_type=media_type(path), filename=Path(name).name,
                        content_disposition_type="inline")


@router.get("/productions/{pid}/events", summary="Server-Sent Events of one production")
def production_events(pid: str, request: Request, caller: Viewer):
    studio = studio_of(request)
    service.require_production(studio.store, pid)
    return events.stream(request, studio.store, pid)


@router.get("/events", summary="Server-Sent Events: every ledger event, live")
def all_events(request: Request, caller: Viewer):
    return events.stream(request, studio_of(request).store)


# -- money and quota -----------------------------------------------------------------------------
@router.get("/cost", summary="The cost ledger per production, day and model")
def cost(request: Request, caller: Viewer) -> dict:
    studio = studio_of(request)
    return service.cost(studio.base, studio.store).model_dump()


@router.get("/quota", summary="The breaker, pauses and submits in the last minute and day")
def quota(request: Request, caller: Viewer) -> dict:
    snapshot = studio_of(request).store.quota_snapshot()
    now = time.time()
    gates = []
    for gate in snapshot.pop("gates"):
        paused = (gate["open_until"] or 0) > now
        gates.append({"name": gate["name"], "open": paused, "until": gate["open_until"] if paused else None,
                      "reason": gate["reason"] if paused else None,
                      "consecutive_failures": gate["consecutive_failures"]})
    base = studio_of(request).base
    return {**snapshot, "gates": gates, "rpm": base.veo3_rpm, "rpd": base.veo3_rpd,
            "max_concurrent": base.veo3_max_concurrent}


# -- dead letters (with a broker: Celery tasks that exhausted their retries) -------------------------------------
@router.get("/dead", summary="Dead letters: tasks that exhausted their retries (newest first)")
def dead_letters(request: Request, caller: Viewer, all: bool = False) -> dict:
    return {"dead_letters": studio_of(request).store.dead_letters(include_retried=all)}


@router.post("/dead/{letter_id}/retry", status_code=202, summary="Re-queue a dead letter's task (once)")
def retry_dead_letter(letter_id: int, request: Request, caller: Operator) -> dict:
    from reelcrew.service import queue

    studio = studio_of(request)
    letter = queue.retry_dead(studio.base, studio.store, letter_id, actor=caller.name)
    return {"retried": letter_id, "task": letter["task"], "production_id": letter["production_id"]}


# -- uploads and tokens --------------------------------------------------------------------------
@router.post("/uploads", status_code=201, summary="Upload music or a logo for a re-cut; answers its id")
async def upload(request: Request, caller: Operator, file: Annotated[UploadFile, File()]) -> dict:
    kind = UPLOAD_TYPES.get((file.content_type or "").split(";")[0])
    if kind is None:
        raise InputError(f"file: type {file.content_type!r} is not accepted",
                         "upload mp3, wav, m4a, aac, ogg music or a png/jpg logo")
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise InputError("file: over 50 MiB", "upload a smaller file")
    name = f"{hashlib.sha256(data).hexdigest()[:32]}.{kind}"
    folder: Path = request.app.state.uploads
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    studio_of(request).store.log_action("upload", f"{name} uploaded by {caller.name}", caller.name)
    return {"id": name, "bytes": len(data)}


@router.post("/tokens", status_code=201, summary="Create a token (admin); the secret is shown once")
def new_token(body: TokenRequest, request: Request, caller: Admin) -> dict:
    store = studio_of(request).store
    token = create_token(store, body.name, body.role, body.daily_budget_usd)
    if token is None:
        raise Busy(f"a token named {body.name!r} exists", "choose another name")
    store.log_action("token", f"token {body.name} ({body.role}) created by {caller.name}", caller.name)
    return {"name": body.name, "role": body.role, "token": token}


@router.get("/tokens", summary="The tokens (admin; names and roles, never the secrets)")
def tokens(request: Request, caller: Admin) -> dict:
    return {"tokens": studio_of(request).store.token_rows()}


@router.delete("/tokens/{name}", summary="Revoke a token (admin): it stops working at once; its events keep its name")
def revoke_token(name: str, request: Request, caller: Admin) -> dict:
    store = studio_of(request).store
    if not store.revoke_token(name):
        raise NotFound(f"no live token named {name!r}", "list the tokens with GET /api/tokens")
    store.log_action("token", f"token {name} revoked by {caller.name}", caller.name)
    return {"name": name, "revoked": True}


@router.get("/me", summary="Who the token is")
def me(caller: Viewer) -> dict:
    return {"name": caller.name, "role": caller.role}
