"""Server-Sent Events from the ledger's events table: every event, in id order, live.

The stream polls the ledger (cheap: one indexed read a few times a second), so it sees what any process
writes, the embedded runner's jobs and a CLI run alike. `Last-Event-ID` (or `?after=`) resumes a stream."""

from __future__ import annotations

import asyncio
import json

from fastapi import Request
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from reelcrew.store import Store

POLL_SECONDS = 0.25
GLOBAL_BACKLOG = 50  # a new global listener first gets this many recent events


def event_payload(row: dict) -> dict:
    return {"id": row["id"], "at": row["at"], "production_id": row["production_id"], "clip_index": row["clip_index"],
            "stage": row["stage"], "kind": row["kind"], "message": row["message"], "attempt": row["attempt"],
            "actor": row.get("actor")}


def start_after(request: Request, store: Store, production_id: str | None) -> int:
    given = request.headers.get("last-event-id") or request.query_params.get("after")
    if given and given.isdigit():
        return int(given)
    return 0 if production_id else max(0, store.last_event_id() - GLOBAL_BACKLOG)


def stream(request: Request, store: Store, production_id: str | None = None) -> EventSourceResponse:
    after = start_after(request, store, production_id)

    async def events():
        nonlocal after
        while not await request.is_disconnected():
            rows = await run_in_threadpool(store.events_after, after, production_id)
            for row in rows:
                after = row["id"]
                yield {"id": str(row["id"]), "data": json.dumps(event_payload(row),
                                                                 ensure_ascii=False)}
            if not rows:
                await asyncio.sleep(POLL_SECONDS)

    return EventSourceResponse(events(), ping=15, headers={"Cache-Control": "no-store"})
