"""The dashboard at /: server-rendered pages (Jinja2) with a little plain JS (static/app.js) over the same API.

No build step and no CDN: the pages work offline. Logging in trades a token for an HttpOnly, SameSite=Strict
session cookie; each page carries the session's CSRF token, which the JS sends with every change."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from reelcrew.web.auth import COOKIE, SESSION_SECONDS, Caller

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def session_caller(request: Request) -> Caller | None:
    cookie = request.cookies.get(COOKIE)
    return request.app.state.auth.by_session(cookie) if cookie else None


def page(request: Request, name: str, **context) -> Response:
    caller = session_caller(request)
    if caller is None:
        return RedirectResponse("/login", status_code=303)
    assert caller.session is not None
    csrf = request.app.state.auth.csrf_for(caller.session)
    return templates.TemplateResponse(request, name, {"caller": caller, "csrf": csrf, **context})


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return templates.TemplateResponse(request, "login.html", {"error": None})


@router.post("/login")
def login(request: Request, token: str = Form(..., max_length=200)) -> Response:
    caller = request.app.state.auth.by_token(token.strip())
    if caller is None:
        return templates.TemplateResponse(request, "login.html", {"error": "That token is not valid."},
                                          status_code=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, request.app.state.auth.session_for(caller), max_age=SESSION_SECONDS, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/")
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    caller = session_caller(request)
    response = RedirectResponse("/login", status_code=303)
    if caller and caller.session and csrf == request.app.state.auth.csrf_for(caller.session):
        response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> Response:
    return page(request, "index.html")


@router.get("/productions/{pid}", response_class=HTMLResponse)
def production(request: Request, pid: str) -> Response:
    return page(request, "production.html", pid=pid)


@router.get("/cost", response_class=HTMLResponse)
def cost(request: Request) -> Response:
    return page(request, "cost.html")


@router.get("/quota", response_class=HTMLResponse)
def quota(request: Request) -> Response:
    return page(request, "quota.html")


@router.get("/slo", response_class=HTMLResponse)
def slo_page(request: Request, window: str = "24h") -> Response:
    """The seed-004 SLOs over the window, rendered on the server (the same numbers as `reelcrew slo`)."""
    from reelcrew import slo
    from reelcrew.errors import ReelcrewError

    studio = request.app.state.studio
    try:
        report = slo.compute(studio.store, studio.base.slo, slo.parse_window(window))
    except ReelcrewError as exc:
        return page(request, "slo.html", report=None, window=window, problem=f"{exc.problem}; {exc.fix}")
    return page(request, "slo.html", report=report, window=window, problem=None)
