"""`/metrics` (Prometheus text format, a viewer token: Prometheus sends it with `authorization` in its scrape
config) and `/api/slo` (the SLO report the dashboard's SLO page shows). Both read the ledger only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from reelcrew import metrics, slo
from reelcrew.web.auth import Caller, require

router = APIRouter()
Viewer = Annotated[Caller, Depends(require("viewer"))]


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request, caller: Viewer) -> Response:
    studio = request.app.state.studio
    body = await run_in_threadpool(metrics.exposition, studio.store, studio.base)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/api/slo")
async def slo_report(request: Request, caller: Viewer,
                     window: Annotated[str, Query(description="24h, 30m, 7d or seconds")] = "24h") -> dict:
    """The seed-004 SLOs over the window: value, min/max, target and ok per SLO (`reelcrew slo --json`)."""
    studio = request.app.state.studio
    seconds = slo.parse_window(window)
    report = await run_in_threadpool(slo.compute, studio.store, studio.base.slo, seconds)
    return report.as_json()
