"""A live `reelcrew serve` app for tests: uvicorn on 127.0.0.1 in a thread (real HTTP, real streaming), mock
mode on the test's own SQLite ledger, and a client per token."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import uvicorn

from reelcrew.settings import load_settings
from reelcrew.web import create_app
from reelcrew.web.auth import create_token
from tests.waiting import wait_until

ADMIN = "test-admin-token-not-secret"


class LiveServer:
    def __init__(self, out: Path, **app_options):
        self.settings = load_settings(reelcrew_output_dir=out)
        self.app = create_app(self.settings, admin_token=ADMIN, **app_options)
        self.studio = self.app.state.studio
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_until(lambda: self.server.started, "uvicorn to start")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.studio.wait_idle(timeout=300)

    def client(self, token: str | None = ADMIN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def token(self, name: str, role: str) -> str:
        token = create_token(self.studio.store, name, role)
        assert token
        return token

    def wait_status(self, client: httpx.Client, pid: str, *statuses: str, timeout: float = 240) -> dict:
        def check():
            body = client.get(f"/api/productions/{pid}").json()
            return body if body["status"] in statuses and not body["busy"] else None

        return wait_until(check, f"{pid} to become {' or '.join(statuses)}", timeout=timeout, interval=0.1)


def now() -> float:
    return time.time()
