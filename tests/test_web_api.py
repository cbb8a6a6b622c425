"""`reelcrew serve`'s API over the real app (uvicorn on 127.0.0.1) and the SQLite ledger in mock mode: the approval
flow to a final served with 206, idempotent create, the role matrix, traversal refused, SSE in order, bad input."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from tests.web_helpers import LiveServer

pytestmark = pytest.mark.slow

MOCK = {"mock": True, "scenes": 2, "hold": True}


@pytest.fixture
def live(tmp_path, monkeypatch):
    monkeypatch.setenv("VEO3_MOCK_FILTER_WORD", "forbiddenword")
    with LiveServer(tmp_path / "out") as server:
        yield server


def create(client: httpx.Client, topics: list[str], **options) -> httpx.Response:
    return client.post("/api/productions", json={"topics": topics, **MOCK, **options})


def test_create_hold_edit_approve_done_and_the_final_served_in_ranges(live):
    op_token = live.token("olivia", "operator")
    client = live.client(op_token)
    answer = create(client, ["how tea is made"])
    assert answer.status_code == 202, answer.text
    [prod] = answer.json()["productions"]
    assert prod["status"] in ("queued", "running") and prod["topic"] == "how tea is made"
    pid = prod["id"]

    held = live.wait_status(client, pid, "awaiting_approval")
    assert held["stage"] == "clips" and held["estimate"]["clips"] == 2 and held["estimate"]["usd"] == 0.0
    assert held["clips"] == [] and [p["index"] for p in held["prompts"]["prompts"]] == [1, 2]
    assert held["script"]["scenes"] and held["seo"]["title"]

    edited = client.patch(f"/api/productions/{pid}/prompts/2", json={"prompt": "A red teapot on a wooden table"})
    assert edited.status_code == 200, edited.text
    assert client.get(f"/api/productions/{pid}").json()["prompts"]["prompts"][1]["prompt"].startswith("A red teapot")

    approved = client.post(f"/api/productions/{pid}/approve")
    assert approved.status_code == 200 and approved.json()["approved_by"] == "olivia"
    done = live.wait_status(client, pid, "done")
    assert [c["status"] for c in done["clips"]] == ["done", "done"]
    assert done["clips"][1]["prompt"].startswith("A red teapot")
    assert set(done["files"]) >= {"final.mp4", "thumbnail.jpg", "final.srt", "metadata.json"}

    whole = client.get(f"/api/productions/{pid}/files/final.mp4")
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    part = client.get(f"/api/productions/{pid}/files/final.mp4", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == whole.content[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(whole.content)}"

    kinds = [(e["kind"], e["actor"]) for e in live.studio.store.recent_events(pid, limit=200) if e["actor"]]
    assert ("created", "olivia") in kinds and ("edit", "olivia") in kinds and ("approved", "olivia") in kinds


def test_a_free_production_is_not_held_unless_asked(live):
    client = live.client()
    pid = create(client, ["why the sky is blue"], hold=False).json()["productions"][0]["id"]
    assert live.wait_status(client, pid, "done")["clips_done"] == 2


def test_idempotent_create_answers_the_same_and_an_existing_batch_is_200(live):
    client = live.client()
    headers = {"Idempotency-Key": "batch-1"}
    first = client.post("/api/productions", json={"topics": ["bread", "面包是怎么做的"], **MOCK}, headers=headers)
    again = client.post("/api/productions", json={"topics": ["bread", "面包是怎么做的"], **MOCK}, headers=headers)
    assert first.status_code == again.status_code == 202 and first.json() == again.json()
    assert [p["topic"] for p in first.json()["productions"]] == ["bread", "面包是怎么做的"]
    other = client.post("/api/productions", json={"topics": ["cheese"], **MOCK}, headers=headers)
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["error"]["problem"]
    for prod in first.json()["productions"]:
        live.wait_status(client, prod["id"], "awaiting_approval")
    same = client.post("/api/productions", json={"topics": ["bread"], **MOCK})  # ids come from the request
    assert same.status_code == 200 and same.json()["productions"][0]["id"] == first.json()["productions"][0]["id"]
    assert len(client.get("/api/productions").json()["productions"]) == 2


def test_role_matrix_and_no_token(live):
    viewer, operator = live.client(live.token("vera", "viewer")), live.client(live.token("otto", "operator"))
    nobody, wrong = live.client(None), live.client("not-a-token")
    pid = create(operator, ["role check"]).json()["productions"][0]["id"]
    live.wait_status(operator, pid, "awaiting_approval")
    assert nobody.get("/api/productions").status_code == 401
    assert wrong.get("/api/productions").status_code == 401
    assert nobody.get("/healthz").json() == {"ok": True}
    ready = nobody.get("/readyz").json()
    assert set(ready["checks"]) == {"ledger", "disk", "ffmpeg", "font"}
    assert set(ready["checks"].values()) <= {"ok", "not ok"}
    for path in ("/api/productions", f"/api/productions/{pid}", "/api/cost", "/api/quota"):
        assert viewer.get(path).status_code == 200, path
    denied = viewer.post(f"/api/productions/{pid}/approve")
    assert denied.status_code == 403 and "operator" in denied.json()["error"]["fix"]
    assert create(viewer, ["viewer cannot create"]).status_code == 403
    assert viewer.delete(f"/api/productions/{pid}").status_code == 403
    assert operator.post("/api/tokens", json={"name": "x", "role": "viewer"}).status_code == 403
    made = live.client().post("/api/tokens", json={"name": "newbie", "role": "viewer"})
    assert made.status_code == 201 and made.json()["token"].startswith("rc_")
    assert live.client(made.json()["token"]).get("/api/me").json() == {"name": "newbie", "role": "viewer"}
    assert "token_sha256" not in json.dumps(live.client().get("/api/tokens").json())
    assert operator.delete("/api/tokens/newbie").status_code == 403
    assert live.client().delete("/api/tokens/newbie").json() == {"name": "newbie", "revoked": True}
    assert live.client(made.json()["token"]).get("/api/me").status_code == 401  # revoked: refused at once
    assert live.client().delete("/api/tokens/newbie").status_code == 404
    cancelled = operator.delete(f"/api/productions/{pid}")
    assert cancelled.status_code == 200 and operator.get(f"/api/productions/{pid}").json()["status"] == "cancelled"
    assert any(e["kind"] == "cancelled" and e["actor"] == "otto" for e in live.studio.store.recent_events(pid))


def test_bad_input_names_the_field_and_nothing_is_half_created(live):
    client = live.client()
    too_long = create(client, ["fine topic", "x" * 201])
    assert too_long.status_code == 422
    assert too_long.json()["error"]["field"] == "topics" and "200" in too_long.json()["error"]["fix"]
    assert create(client, [f"t{i}" for i in range(21)]).status_code == 422
    unknown = client.post("/api/productions", json={"topics": ["a"], "sceens": 3})
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "sceens"
    assert client.get("/api/productions").json()["total"] == 0  # nothing half-created
    assert client.get("/api/productions/no-such-id").status_code == 404
    big = client.post("/api/productions", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                      headers={"Content-Type": "application/json"})
    assert big.status_code == 413


def test_file_routes_refuse_traversal(live, tmp_path):
    client = live.client()
    pid = create(client, ["traversal"], hold=False, scenes=1).json()["productions"][0]["id"]
    live.wait_status(client, pid, "done")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    folder = tmp_path / "out" / pid
    os.symlink(secret, folder / "metadata.json.link")
    (folder / "clips" / "clip-09.mp4").symlink_to(secret)
    attempts = ["../../secret.txt", "..%2F..%2Fsecret.txt", "%2e%2e/%2e%2e/secret.txt", "/etc/passwd",
                "%2Fetc%2Fpasswd", "clips/../../../secret.txt", "clips/clip-09.mp4", "metadata.json.link",
                "..\\..\\secret.txt", "reelcrew.log"]
    for name in attempts:
        answer = client.get(f"/api/productions/{pid}/files/{name}")
        assert answer.status_code == 404, (name, answer.status_code)
        assert b"top secret" not in answer.content
    assert client.get(f"/api/productions/{pid}/files/clips/clip-01.mp4").status_code == 200


def test_sse_delivers_a_running_productions_events_in_order(live):
    client = live.client()
    pid = create(client, ["events in order"], hold=False).json()["productions"][0]["id"]
    seen: list[dict] = []
    with client.stream("GET", f"/api/productions/{pid}/events") as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data:"):
                seen.append(json.loads(line.removeprefix("data:").strip()))
                if seen[-1]["kind"] == "final":
                    break
    ids = [e["id"] for e in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    kinds = [e["kind"] for e in seen]
    assert kinds[0] == "created" and kinds[-1] == "final"
    assert kinds.index("submitted") < kinds.index("done") < kinds.index("final")
    assert {e["production_id"] for e in seen} == {pid}
    resumed = []  # Last-Event-ID: a reconnecting listener gets only what came after
    with client.stream("GET", f"/api/productions/{pid}/events", headers={"Last-Event-ID": str(ids[-2])}) as again:
        for line in again.iter_lines():
            if line.startswith("data:"):
                resumed.append(json.loads(line.removeprefix("data:").strip())["id"])
                break
    assert resumed == [ids[-1]]


def test_retry_a_filtered_clip_with_a_new_prompt(live):
    client = live.client()
    pid = create(client, ["retry check"], scenes=2).json()["productions"][0]["id"]
    live.wait_status(client, pid, "awaiting_approval")
    client.patch(f"/api/productions/{pid}/prompts/1", json={"prompt": "a forbiddenword in the kitchen"})
    client.post(f"/api/productions/{pid}/approve")
    after = live.wait_status(client, pid, "done", "failed", "incomplete")
    assert after["clips"][0]["status"] == "filtered" and "mock safety filter" in after["clips"][0]["error"]
    assert after["clips"][0]["fix"].startswith("edit the prompt")
    retried = client.post(f"/api/productions/{pid}/clips/1/retry", json={"prompt": "a teapot in the kitchen"})
    assert retried.status_code == 202, retried.text
    done = live.wait_status(client, pid, "done")
    assert [c["status"] for c in done["clips"]] == ["done", "done"]
    assert "final.mp4" in done["files"]


def test_dashboard_session_needs_csrf_cors_is_only_for_listed_origins_and_creates_are_rate_limited(tmp_path):
    with LiveServer(tmp_path / "out", cors_origins=["https://studio.example"], create_rate=2) as live:
        browser = live.client(None)
        assert browser.post("/login", data={"token": "wrong"}).status_code == 401
        logged_in = browser.post("/login", data={"token": live.token("olga", "operator")})
        assert logged_in.status_code == 303
        cookie = logged_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        page = browser.get("/").text
        csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
        body = {"topics": ["csrf"], **MOCK}
        assert browser.post("/api/productions", json=body).status_code == 403  # the cookie alone is not enough
        assert browser.post("/api/productions", json=body, headers={"X-CSRF-Token": "forged"}).status_code == 403
        assert browser.post("/api/productions", json=body, headers={"X-CSRF-Token": csrf}).status_code == 202
        assert browser.post("/api/productions", json={**body, "topics": ["csrf 2"]},
                            headers={"X-CSRF-Token": csrf}).status_code == 202
        limited = browser.post("/api/productions", json={**body, "topics": ["csrf 3"]}, headers={"X-CSRF-Token": csrf})
        assert limited.status_code == 429 and "REELCREW_CREATE_RATE" in limited.json()["error"]["fix"]

        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        allowed = browser.options("/api/productions", headers={"Origin": "https://studio.example", **preflight})
        assert allowed.headers.get("access-control-allow-origin") == "https://studio.example"
        other = browser.options("/api/productions", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers
        live.studio.wait_idle(timeout=300)


def test_a_recut_changes_settings_without_new_spend_and_refuses_server_paths(live):
    client = live.client()
    pid = create(client, ["re-cut"], hold=False, scenes=1).json()["productions"][0]["id"]
    first = live.wait_status(client, pid, "done")
    refused = client.post(f"/api/productions/{pid}/assemble", json={"watermark": {"image": "/etc/passwd"}})
    assert refused.status_code == 422 and "upload" in refused.json()["error"]["fix"]
    logo = client.post("/api/uploads", files={"file": ("logo.png", png_bytes(), "image/png")})
    assert logo.status_code == 201, logo.text
    recut = client.post(f"/api/productions/{pid}/assemble",
                        json={"subtitles": {"position": "top"}, "logo_upload": logo.json()["id"]})
    assert recut.status_code == 202, recut.text
    again = live.wait_status(client, pid, "done")
    assert "final.mp4" in again["files"] and again["clips"] == first["clips"]
    kinds = [e["kind"] for e in live.studio.store.recent_events(pid, limit=100)]
    assert kinds.count("final") == 2 and kinds.count("submitted") == 1


def png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGBA", (64, 32), (200, 30, 30, 255)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_paid_production_waits_for_approval_and_a_tokens_daily_budget_refuses_more(real_env, fake, tmp_path):
    from reelcrew.web.auth import create_token

    with LiveServer(tmp_path / "served") as live:
        capped = create_token(live.studio.store, "intern", "operator", daily_budget_usd=1.0)
        client = live.client(capped)
        pid = client.post("/api/productions", json={"topics": ["tea"], "scenes": 3}).json()["productions"][0]["id"]
        held = live.wait_status(client, pid, "awaiting_approval")
        assert held["estimate"]["clips"] == 3 and held["estimate"]["usd"] == pytest.approx(2.40)
        refused = client.post(f"/api/productions/{pid}/approve")
        assert refused.status_code == 409 and "daily budget of $1.00" in refused.json()["error"]["problem"]
        assert fake.accepted == 0 and client.get(f"/api/productions/{pid}").json()["status"] == "awaiting_approval"
        auto = client.post("/api/productions", json={"topics": ["coffee"], "scenes": 3, "auto_approve": True})
        parked = live.wait_status(client, auto.json()["productions"][0]["id"], "awaiting_approval")
        # auto_approve does not slip past the token's daily budget
        assert fake.accepted == 0 and "daily budget of token 'intern'" in parked["error"]
        assert live.client().post(f"/api/productions/{pid}/approve").status_code == 200  # the admin has no cap
        done = live.wait_status(client, pid, "done")
        assert fake.accepted == 3 and done["cost_usd"] == pytest.approx(2.40)
