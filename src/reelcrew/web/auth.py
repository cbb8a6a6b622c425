"""Who is calling: API tokens with roles, the dashboard's session cookie and its CSRF token.

Tokens are random (`rc_` + 32 bytes); the ledger keeps only their SHA-256 (a random secret needs no slow hash).
`REELCREW_ADMIN_TOKEN` is an admin named `admin` that is never stored. The dashboard trades a token for an
HttpOnly, SameSite=Strict cookie signed with the server's secret (a file beside the ledger, so a restart keeps
sessions); a cookie-authenticated change must also carry the session's CSRF token. Bearer calls need none."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from reelcrew.store import Store

ROLES = {"viewer": 1, "operator": 2, "admin": 3}
COOKIE = "reelcrew_session"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class AuthError(Exception):
    def __init__(self, status: int, problem: str, fix: str):
        self.status, self.problem, self.fix = status, problem, fix
        super().__init__(problem)


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    daily_budget_usd: float | None = None
    via: str = "bearer"  # or "cookie"
    session: str | None = None

    def allows(self, role: str) -> bool:
        return ROLES[self.role] >= ROLES[role]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "rc_" + secrets.token_urlsafe(32)


def create_token(store: Store, name: str, role: str, daily_budget_usd: float | None = None) -> str | None:
    """A new token (printed once, stored hashed); None when the name is taken."""
    token = new_token()
    return token if store.add_token(name, role, hash_token(token), daily_budget_usd) else None


def server_secret(state_dir: Path) -> bytes:
    """The key that signs session cookies: made once, readable by this user only."""
    path = state_dir / "serve-secret"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


class Auth:
    def __init__(self, store: Store, secret: bytes, admin_token: str | None = None):
        self.store, self.secret = store, secret
        self.admin_hash = hash_token(admin_token) if admin_token else None

    def configured(self) -> bool:
        """Is any token able to log in? (serve refuses a non-loopback address without one)"""
        return bool(self.admin_hash) or any(not t["revoked_at"] for t in self.store.token_rows())

    def by_token(self, token: str) -> Caller | None:
        digest = hash_token(token)
        if self.admin_hash and hmac.compare_digest(digest, self.admin_hash):
            return Caller("admin", "admin")
        row = self.store.token_by_hash(digest)
        return Caller(row["name"], row["role"], row["daily_budget_usd"]) if row else None

    def by_name(self, name: str) -> Caller | None:
        if name == "admin" and self.admin_hash:
            return Caller("admin", "admin")
        for row in self.store.token_rows():
            if row["name"] == name and not row["revoked_at"]:
                return Caller(row["name"], row["role"], row["daily_budget_usd"])
        return None

    # -- sessions -------------------------------------------------------------------------------
    def _sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def session_for(self, caller: Caller) -> str:
        payload = f"{caller.name}|{int(time.time()) + SESSION_SECONDS}|{secrets.token_hex(8)}"
        return base64.urlsafe_b64encode(f"{payload}|{self._sign(payload)}".encode()).decode().rstrip("=")

    def by_session(self, cookie: str) -> Caller | None:
        try:
            padded = cookie + "=" * (-len(cookie) % 4)
            name, expires, nonce, signature = base64.urlsafe_b64decode(padded.encode()).decode().split("|")
        except (ValueError, UnicodeDecodeError):
            return None
        payload = f"{name}|{expires}|{nonce}"
        if not hmac.compare_digest(signature, self._sign(payload)) or int(expires) < time.time():
            return None
        caller = self.by_name(name)
        return Caller(caller.name, caller.role, caller.daily_budget_usd, "cookie", cookie) if caller else None

    def csrf_for(self, session: str) -> str:
        return self._sign(f"csrf|{session}")

    # -- a request ------------------------------------------------------------------------------
    def caller(self, request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            caller = self.by_token(token.strip()) if scheme.lower() == "bearer" else None
            if caller is None:
                raise AuthError(401, "the token is not valid", "send `Authorization: Bearer TOKEN` with a token "
                                "from `reelcrew token create NAME --role ROLE`")
            return caller
        cookie = request.cookies.get(COOKIE)
        caller = self.by_session(cookie) if cookie else None
        if caller is None:
            raise AuthError(401, "no token", "send `Authorization: Bearer TOKEN`, or log in on the dashboard")
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not (sent and caller.session and hmac.compare_digest(sent, self.csrf_for(caller.session))):
                raise AuthError(403, "missing or wrong CSRF token", "reload the dashboard page and try again")
        return caller


def require(role: str):
    """A FastAPI dependency: the caller, if its role is at least `role` (401 without a token, 403 below)."""

    def dependency(request: Request) -> Caller:
        caller = request.app.state.auth.caller(request)
        if not caller.allows(role):
            raise AuthError(403, f"token {caller.name!r} is a {caller.role}; this needs {role}",
                            f"use a token with the {role} role (`reelcrew token create NAME --role {role}`)")
        return caller

    return dependency
