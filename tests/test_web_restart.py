"""`reelcrew serve` killed with SIGKILL mid-batch and started again, in real mode (the real google-genai SDK
against the fake Google server): the batch resumes by itself, the dashboard's data shows it done, no clip is paid
twice, and a paid production created without auto_approve waits for approval with its estimate, paying nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from tests.waiting import wait_until

pytestmark = pytest.mark.slow
ADMIN = "restart-admin-token-not-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_serve(port: int) -> subprocess.Popen:
    env = {**os.environ, "REELCREW_ADMIN_TOKEN": ADMIN}
    return subprocess.Popen([sys.executable, "-m", "reelcrew", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_kill_nine_mid_batch_then_restart_resumes_and_pays_each_clip_once(real_env, fake):
    fake.script.latency = 1.5
    port = free_port()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {ADMIN}"},
                          timeout=60)
    proc = start_serve(port)
    try:
        wait_until(lambda: healthy(client), "serve to answer", proc=proc)
        made = client.post("/api/productions", json={"topics": ["tea", "rice"], "scenes": 3, "auto_approve": True})
        assert made.status_code == 202, made.text
        ids = [p["id"] for p in made.json()["productions"]]
        held = client.post("/api/productions", json={"topics": ["coffee"], "scenes": 3}).json()["productions"][0]

        def receipts() -> int:
            return sum(1 for pid in ids for c in client.get(f"/api/productions/{pid}").json()["clips"]
                       if c["operation"])

        wait_until(lambda: receipts() >= 2, "receipts of the first clips", proc=proc)
        assert any(c["status"] != "done" for pid in ids for c in client.get(f"/api/productions/{pid}").json()["clips"])
        proc.send_signal(signal.SIGKILL)
        proc.wait()

        proc = start_serve(port)
        wait_until(lambda: healthy(client), "serve to answer again", proc=proc)

        def finished() -> bool:
            return all(client.get(f"/api/productions/{pid}").json()["status"] == "done" for pid in ids)

        wait_until(finished, "the batch to finish after the restart", timeout=300, proc=proc)
        browser = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        browser.post("/login", data={"token": ADMIN})
        listed = {p["id"]: p for p in browser.get("/api/productions").json()["productions"]}
        assert [listed[pid]["status"] for pid in ids] == ["done", "done"]
        assert "reelcrew" in browser.get(f"/productions/{ids[0]}").text

        details = [client.get(f"/api/productions/{pid}").json() for pid in ids]
        duplicates = sum(1 for d in details for c in d["clips"] if c["possible_duplicate"])
        assert 6 <= fake.accepted <= 6 + duplicates
        assert max(fake.accepted_by_prompt.values()) <= 1 + duplicates
        assert all(d["files"] and "final.mp4" in d["files"] for d in details)
        waiting = wait_until(lambda: (lambda d: d if d["status"] == "awaiting_approval" else None)(
            client.get(f"/api/productions/{held['id']}").json()), "the paid production to wait for approval", proc=proc)
        assert waiting["clips"] == [] and not [p for p in fake.accepted_by_prompt if "coffee" in p]
        assert waiting["estimate"]["clips"] == 3 and waiting["estimate"]["usd"] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_serve_refuses_a_public_address_without_a_token_and_token_create_prints_one_that_works(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REELCREW_ADMIN_TOKEN"}
    refused = subprocess.run([sys.executable, "-m", "reelcrew", "serve", "--host", "0.0.0.0", "--port", "1"],
                             env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2
    assert "no token configured" in refused.stderr and "REELCREW_ADMIN_TOKEN" in refused.stderr
    made = subprocess.run([sys.executable, "-m", "reelcrew", "token", "create", "ci-bot", "--role", "viewer"],
                          env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("rc_")
    ledgers = list((tmp_path / "home").rglob("reelcrew.db*"))
    assert ledgers and all(token.encode() not in path.read_bytes() for path in ledgers)  # only its hash is kept
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "reelcrew", "serve", "--host", "0.0.0.0", "--port", str(port)],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        wait_until(lambda: healthy(client), "serve on 0.0.0.0 with a token in the ledger", proc=proc)
        assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json() == {
            "name": "ci-bot", "role": "viewer"}
        assert client.get("/api/me").status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
