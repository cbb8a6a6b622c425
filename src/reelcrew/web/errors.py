"""How an error becomes an HTTP answer: `{"error": {"problem", "fix", "field"}}` with 401, 403, 404, 409, 413 or
422, the same shape for our own errors, FastAPI's validation errors and the auth layer's."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from reelcrew.errors import BudgetError, ConfigError, InputError, ReelcrewError
from reelcrew.web.auth import AuthError
from reelcrew.web.schemas import MAX_PROMPT_CHARS, MAX_TOPIC_CHARS, MAX_TOPICS
from reelcrew.web.studio import Busy

FIXES = {
    "topics": f"send 1 to {MAX_TOPICS} topics, each 1 to {MAX_TOPIC_CHARS} characters",
    "scenes": "send scenes between 1 and 30",
    "aspect_ratio": 'send aspect_ratio "16:9" or "9:16"',
    "language": 'send language "auto" or a code such as "en" or "zh"',
    "until": "send until as one of script, seo, prompts, clips, final",
    "budget_usd": "send budget_usd as a number of dollars, 0 or more",
    "prompt": f"send a prompt of 1 to {MAX_PROMPT_CHARS} characters",
    "role": "send role viewer, operator or admin",
}


class NotFound(ReelcrewError):
    pass


class RateLimited(ReelcrewError):
    pass


def answer(status: int, problem: str, fix: str | None, field: str | None = None) -> JSONResponse:
    body: dict = {"problem": problem, "fix": fix}
    if field:
        body["field"] = field
    return JSONResponse({"error": body, "detail": f"{problem}" + (f" (fix: {fix})" if fix else "")}, status)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        fix = FIXES.get(loc[0] if loc else "", f"correct `{field}` (the schema is at /docs)")
        if first.get("type") == "extra_forbidden":
            fix = f"remove `{field}`: it is not an option here (see /docs)"
        message = first.get("msg", "invalid").removeprefix("Value error, ")
        return answer(422, f"{field}: {message}", fix, field)

    @app.exception_handler(AuthError)
    async def auth(request: Request, exc: AuthError) -> JSONResponse:
        return answer(exc.status, exc.problem, exc.fix)

    @app.exception_handler(ReelcrewError)
    async def ours(request: Request, exc: ReelcrewError) -> JSONResponse:
        if isinstance(exc, NotFound) or (isinstance(exc, InputError) and exc.problem.startswith("no production")):
            status = 404
        elif isinstance(exc, RateLimited):
            status = 429
        elif isinstance(exc, Busy | BudgetError):
            status = 409
        elif isinstance(exc, InputError | ConfigError):
            status = 422
        else:
            status = 500
        return answer(status, exc.problem, exc.fix)

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return answer(exc.status_code, str(exc.detail), None)
