"""The FastAPI app of `reelcrew serve`: the API (/api, documented at /docs), the dashboard (/), health checks,
and the embedded runner started with it (and, on start, resuming what a killed server left unfinished)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelcrew import alerts
from reelcrew.health import readiness as shared_readiness
from reelcrew.service.ledger import open_store
from reelcrew.settings import Settings
from reelcrew.slo_watch import watch_for
from reelcrew.web import api, dashboard, errors, observe
from reelcrew.web.auth import Auth, server_secret
from reelcrew.web.studio import Studio

HERE = Path(__file__).parent
MAX_BODY_BYTES = 1024 * 1024  # JSON requests; uploads have their own limit
MAX_UPLOAD_BODY = 51 * 1024 * 1024


class BodyLimit:
    """Refuse (413) a request whose declared or actual body is over the limit, before anything reads it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = MAX_UPLOAD_BODY if scope["path"] == "/api/uploads" else MAX_BODY_BYTES
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await too_large(limit)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except TooLarge:
            await too_large(limit)(scope, receive, send)


class TooLarge(Exception):
    pass


def too_large(limit: int) -> JSONResponse:
    return errors.answer(413, f"the request body is over {limit // 1024} KiB", "send a smaller request")


def readiness(studio: Studio) -> dict[str, bool]:
    """ok / not ok per check, nothing more (answered without a token): the checks `reelcrew doctor` shows."""
    return shared_readiness(studio.base, studio.store)


def create_app(settings: Settings, *, config: Path | None = None, admin_token: str | None = None,
               cors_origins: list[str] | None = None, workers: int = 2, create_rate: int = 30,
               recover: bool = True) -> FastAPI:
    store = open_store(settings)
    studio = Studio(settings, store, config, workers)
    alerts.install(settings)  # REELCREW_ALERT_WEBHOOK: the runs this server makes send their alerts

    slo_watch = watch_for(settings, store)  # REELCREW_SLO_CHECK_SECONDS: the slo_broken alert without cron

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if recover:
            studio.recover()
        if slo_watch is not None:
            slo_watch.start()
        yield
        if slo_watch is not None:
            slo_watch.stop()
        studio.shutdown()

    app = FastAPI(title="reelcrew", version="0.1.0", lifespan=lifespan,
                  description="Topics in, finished short videos out. Every route but /healthz and /readyz needs "
                              "`Authorization: Bearer TOKEN` (`reelcrew token create NAME --role ROLE`).")
    app.state.studio = studio
    app.state.slo_watch = slo_watch
    app.state.auth = Auth(store, server_secret(settings.state_dir), admin_token)
    app.state.create_rate = create_rate
    app.state.uploads = settings.state_dir / "uploads"
    errors.install(app)
    app.include_router(api.router)
    app.include_router(dashboard.router)
    app.include_router(observe.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key"])
    app.add_middleware(BodyLimit)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True}

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> JSONResponse:
        checks = readiness(studio)
        ok = all(checks.values())
        return JSONResponse({"ok": ok, "checks": {k: "ok" if v else "not ok" for k, v in checks.items()}},
                            200 if ok else 503)

    return app
