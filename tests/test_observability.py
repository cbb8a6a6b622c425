"""Issue 13: /metrics agrees with the ledger after a batch with rehearsed trouble, `reelcrew slo` computes the
seed's SLOs from known rows with the right exit codes, and alerts reach a webhook once per interval without a
failing or hanging receiver changing anything in the batch."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from reelcrew import alerts, service
from reelcrew.cli import app
from reelcrew.results import ApprovalPolicy
from reelcrew.settings import load_settings
from reelcrew.store import Store
from reelcrew.web import create_app
from reelcrew.web.auth import create_token
from tests.waiting import wait_until

FAST_MOCK = dict(reelcrew_llm="mock", veo3_mock_mode=True, scenes=2, polling_interval=0.05,
                 veo3_retry_wait_base=0.05, veo3_quota_wait_time=0.3)


# -- a local webhook receiver -------------------------------------------------------------------------------
class Receiver:
    """Records each POSTed JSON body; `mode` ok (200), fail (500) or hang (never answers until closed)."""

    def __init__(self, mode: str = "ok"):
        self.mode, self.bodies, self.release = mode, [], threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.bodies.append(json.loads(body))
                if receiver.mode == "hang":
                    receiver.release.wait(60)
                    return
                self.send_response(500 if receiver.mode == "fail" else 200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/services/T000/B000/secret-part"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        return [body["text"] for body in self.bodies]

    def close(self):
        self.release.set()
        self.httpd.shutdown()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(mode: str = "ok") -> Receiver:
        made.append(Receiver(mode))
        return made[-1]

    yield make
    alerts.uninstall()
    for r in made:
        r.close()


# -- metrics ----------------------------------------------------------------------------------------------
def scrape(settings, token_role: str = "viewer") -> dict[str, dict[tuple, float]]:
    """GET /metrics of the serve app with a token of `token_role`, parsed with prometheus_client's parser."""
    app = create_app(settings, recover=False)
    client = TestClient(app)
    assert client.get("/metrics").status_code == 401
    token = create_token(app.state.studio.store, f"prom-{token_role}", token_role)
    answer = client.get("/metrics", headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    app.state.studio.shutdown()
    return out


def by_label(samples: dict[tuple, float], label: str, **where: str) -> Counter:
    out: Counter = Counter()
    for labels, value in samples.items():
        d = dict(labels)
        if all(d.get(k) == v for k, v in where.items()):
            out[d[label]] += value
    return out


@pytest.mark.slow
def test_metrics_agree_with_the_ledger_after_a_mock_batch_with_rehearsed_429s_and_failures(tmp_path):
    settings = load_settings(**{**FAST_MOCK, "scenes": 3}, reelcrew_output_dir=tmp_path / "out",
                             veo3_mock_quota_rate=0.4, veo3_mock_failure_rate=0.4, veo3_mock_filter_rate=0.2,
                             veo3_mock_seed=6, veo3_max_retries=1)
    store = service.open_store(settings)
    prods = service.plan(settings, ["tea fields at dawn"], store)
    service.run(settings, prods, until="clips", store=store)

    metrics = scrape(settings)
    submits = by_label(metrics["reelcrew_veo_submits_total"], "outcome", backend="mock")
    receipts = Counter(r["outcome"] for r in store.receipts())
    quota_events = [e for e in store.recent_events(limit=1000) if e["kind"] == "quota"]
    assert submits["accepted"] == receipts["accepted"] > 0
    assert submits["quota_minute"] == len(quota_events) > 0  # the rehearsed 429s, counted under backend mock
    assert set(submits) <= {"accepted", "quota_minute"}
    clips = Counter(row["status"] for row in store.all_clip_rows())
    assert by_label(metrics["reelcrew_clips"], "status") == clips
    assert clips["failed"] + clips["filtered"] > 0 and clips["done"] > 0  # the trouble really happened
    filtered = by_label(metrics["reelcrew_clips"], "reason", status="filtered")
    assert set(filtered) <= {"mock"} and sum(filtered.values()) == clips["filtered"]
    ended = by_label(metrics["reelcrew_veo_operations_ended_total"], "ending")
    assert sum(ended.values()) == receipts["accepted"]  # every accepted operation ended: done, filtered or failed
    assert ended["failed"] > 0 and ended["done"] == clips["done"]
    assert metrics["reelcrew_clip_download_seconds_count"][()] == clips["done"]
    assert metrics["reelcrew_veo_submit_wait_seconds_count"][()] == sum(submits.values())
    assert sum(metrics["reelcrew_spent_usd_total"].values()) == store.spent_usd() == 0.0  # the mock is free
    assert metrics["reelcrew_veo_in_flight"][()] == 0
    labels = {k for samples in metrics.values() for labels in samples for k, _ in labels}
    assert not labels & {"production_id", "production", "clip", "key"}  # bounded label sets only


@pytest.mark.slow
def test_metrics_count_money_and_real_429s_under_their_backend(real_env, fake, tmp_path):
    """The real SDK against the fake Google server: a per-minute 429, a 503 and a bare 429 before the accepts."""
    fake.script.submit_faults.extend(["429", "503", "429-bare"])
    settings = load_settings(scenes=2, veo3_max_retries=3)
    store = service.open_store(settings)
    prods = service.plan(settings, ["river stones"], store)
    service.run(settings, prods, until="clips", store=store, policy=ApprovalPolicy(yes=True))

    metrics = scrape(settings)
    submits = by_label(metrics["reelcrew_veo_submits_total"], "outcome", backend="gemini")
    assert submits == Counter(accepted=2, quota_minute=1, unavailable=1, quota_other=1)
    assert sum(submits.values()) == fake.submit_attempts
    spent = metrics["reelcrew_spent_usd_total"]
    assert sum(spent.values()) == pytest.approx(store.spent_usd()) and store.spent_usd() > 0
    assert by_label(spent, "model", kind="clip") == Counter({settings.veo3_model: pytest.approx(store.spent_usd())})


# -- the SLO report ----------------------------------------------------------------------------------------
def slo_cli(*args: str, config: Path | None = None):
    """`reelcrew slo ARGS` in this process (typer's runner: the same command, exit code and output)."""
    extra = ["--config", str(config)] if config else []
    return CliRunner().invoke(app, ["slo", *args, *extra])


def known_ledger(store: Store) -> None:
    """Six operations with known waits and endings (times relative to now), one of them outside 24 h."""
    now = time.time()
    rows = [  # name, submitted (ago), ending, ended (ago), processing (seconds, outcome) or None
        ("op-fast", 1000, "done", 900, (20, "ok")),
        ("op-slow", 2000, "done", 1600, (40, "ok")),  # 400 s: over the 300 s SLA
        ("op-timeout", 3000, "timeout", 1200, None),
        ("op-filtered", 500, "filtered", 450, None),
        ("op-badfile", 800, "done", 700, (50, "failed")),
        ("op-old", 3 * 86400, "done", 2 * 86400, (10, "failed")),  # before the window
    ]
    for name, submitted, ending, ended, processing in rows:
        store.record_attempt(f"key-{name}", "p1", "gemini", "accepted", 0.0, name, at=now - submitted)
        store.end_operation(name, ending, at=now - ended)
        if processing:
            seconds, outcome = processing
            store.processing(name, None, at=now - ended)
            store.processing(name, outcome, at=now - ended + seconds)


def test_slo_report_from_a_ledger_with_known_waits_and_outcomes(tmp_path):
    settings = load_settings()
    known_ledger(service.open_store(settings))

    broken = slo_cli("--json")
    assert broken.exit_code == 1, broken.output
    report = json.loads(broken.stdout)
    values = {name: report[name]["value"] for name in ("completion_rate", "avg_wait_seconds", "timeout_rate",
                                                       "sla_compliance", "file_success_rate",
                                                       "avg_processing_seconds")}
    assert values == pytest.approx({"completion_rate": 4 / 5, "avg_wait_seconds": (100 + 400 + 50 + 100) / 4,
                                    "timeout_rate": 1 / 5, "sla_compliance": 3 / 5, "file_success_rate": 2 / 3,
                                    "avg_processing_seconds": 30.0}, abs=1e-3)
    assert set(report["broken"]) == {"completion_rate", "timeout_rate", "sla_compliance", "file_success_rate"}
    assert report["completion_rate"]["min"] == 0.95 and report["completion_rate"]["target"] == 0.98
    assert report["avg_wait_seconds"]["max"] == 300 and report["avg_wait_seconds"]["status"] == "ok"

    table = slo_cli()
    assert table.exit_code == 1 and "broken" in table.stdout and "completion_rate" in table.stdout

    loose = tmp_path / "loose.yaml"
    loose.write_text("slo:\n  completion_rate: {min: 0.8, target: 0.9}\n  timeout_rate: {max: 0.25, target: 0.1}\n"
                     "  sla_compliance: {min: 0.5, target: 0.9}\n  file_success_rate: {min: 0.6, target: 0.9}\n",
                     encoding="utf-8")
    ok = slo_cli("--json", config=loose)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True

    only_recent = json.loads(slo_cli("--json", "--window", "10m").stdout)  # op-filtered alone ended in 10 min
    assert only_recent["completion_rate"]["samples"] == 1 and only_recent["avg_wait_seconds"]["value"] == 50
    assert only_recent["file_success_rate"]["status"] == "no data"
    assert slo_cli("--window", "soon").exit_code == 2


def test_the_dashboard_and_the_api_show_the_same_slos(tmp_path):
    settings = load_settings()
    known_ledger(service.open_store(settings))
    app = create_app(settings, recover=False)
    client = TestClient(app)
    token = create_token(app.state.studio.store, "vera", "viewer")
    api = client.get("/api/slo", params={"window": "24h"}, headers={"authorization": f"Bearer {token}"}).json()
    assert api["broken"] == ["completion_rate", "timeout_rate", "sla_compliance", "file_success_rate"]
    assert client.post("/login", data={"token": token}, follow_redirects=False).status_code == 303
    html = client.get("/slo").text
    row = html[html.index('data-slo="timeout_rate"'):]
    assert "0.200" in row[:row.index("</tr>")] and "broken" in row[:row.index("</tr>")]
    app.state.studio.shutdown()


# -- alerts ------------------------------------------------------------------------------------------------
def test_alerts_reach_the_webhook_once_per_interval(receiver, tmp_path):
    hook = receiver("ok")
    settings = load_settings(reelcrew_alert_webhook=hook.url, reelcrew_alert_interval=3600)
    store = service.open_store(settings)
    sender = alerts.install(settings)
    assert sender is not None
    store.log("breaker", "opened for 300s after 3 failures: 503")
    store.log("breaker", "opened for 300s after 3 failures: 503")  # the same kind within the interval: not sent
    store.log("quota", "daily quota exhausted; submits paused until tomorrow")
    store.log("quota", "429 minute, retry in 1.0")  # a per-minute 429 is no alert
    assert sender.flush()
    assert len(hook.texts()) == 2
    assert hook.texts()[0].startswith("[reelcrew] breaker_open") and "quota_day_pause" in hook.texts()[1]

    clock = [0.0]
    timed = alerts.AlertSender(hook.url, interval=60, clock=lambda: clock[0])
    assert timed.notify("dead_letter", "task x") and not timed.notify("dead_letter", "task y")
    clock[0] = 61.0
    assert timed.notify("dead_letter", "task z")  # the next interval
    assert timed.flush()
    assert [t for t in hook.texts() if "dead_letter" in t] == ["[reelcrew] dead_letter: task x",
                                                               "[reelcrew] dead_letter: task z"]
    timed.close()

    # two processes (workers) on one ledger: the interval holds across them
    workers = [alerts.AlertSender(hook.url, interval=3600, claim=lambda kind: store.claim_alert(kind, 3600))
               for _ in range(2)]
    assert all(w.notify("production_failed", "from a worker") for w in workers)  # each one's own interval is free
    assert all(w.flush() for w in workers)
    assert len([t for t in hook.texts() if "production_failed" in t]) == 1
    for w in workers:
        w.close()


def batch_outcome(tmp_path: Path, name: str, webhook: str | None) -> tuple:
    """A mock batch whose clips all fail (so its productions fail and alert) in its own ledger; what it ended with."""
    settings = load_settings(**FAST_MOCK, reelcrew_output_dir=tmp_path / name / "out",
                             reelcrew_state_dir=tmp_path / name / "state", veo3_mock_quota_rate=0.3,
                             veo3_mock_failure_rate=1.0, veo3_max_retries=0, veo3_mock_seed=3,
                             reelcrew_alert_webhook=webhook, reelcrew_alert_interval=0)
    alerts.uninstall()
    alerts.install(settings)
    store = service.open_store(settings)
    prods = service.plan(settings, ["a storm over the sea", "snow on a quiet street"], store)
    summaries = service.run(settings, prods, store=store)
    results = sorted((s.topic, s.status, s.stage, s.clips_done, s.clips_failed) for s in summaries)
    events = Counter((e["kind"], e["production_id"] and store.production(e["production_id"]).topic, e["clip_index"])
                     for e in store.recent_events(limit=1000))
    clips = sorted((row["idx"], row["status"], row["retries"]) for row in store.all_clip_rows())
    return results, events, clips


@pytest.mark.slow
def test_a_failing_or_hanging_receiver_changes_nothing_in_the_batch(receiver, tmp_path):
    plain = batch_outcome(tmp_path, "plain", None)
    assert {r[1] for r in plain[0]} == {"failed"}  # every production failed: each one raises an alert
    failing, hanging = receiver("fail"), receiver("hang")
    assert batch_outcome(tmp_path, "failing", failing.url) == plain
    sender = alerts.current()
    assert sender is not None and sender.flush(20) and sender.failed >= 2 and sender.sent == 0
    assert any("production_failed" in t for t in failing.texts())
    assert batch_outcome(tmp_path, "hanging", hanging.url) == plain
    wait_until(lambda: hanging.bodies, "the hanging receiver to get the alert it never answers")
