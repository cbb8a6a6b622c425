"""Shared fixtures: an isolated environment per test (its own HOME, so its own state folder and ledger),
the fake Google server, and real servers (PostgreSQL, Redis) started once per test run (tests/servers.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import servers  # noqa: E402
from tests.fakes.google_server import FakeGoogle, Script  # noqa: E402

SETTING_PREFIXES = ("REELCREW_", "VEO3_", "GEMINI_", "GOOGLE_", "POLLING_", "OPERATION_", "DOWNLOAD_", "SUBMIT_",
                    "GCS_", "AWS_")

# Real mode, but with the waits of a test. Short sleeps between tries; generous timeouts, because a timeout
# that fires on a busy machine turns a passing test into a failing one (a timed-out submit is "ambiguous").
FAST = {
    "POLLING_INTERVAL": "0.05", "VEO3_RETRY_WAIT_BASE": "0.05", "VEO3_QUOTA_WAIT_TIME": "0.3",
    "SUBMIT_TIMEOUT": "30", "OPERATION_TIMEOUT": "120", "DOWNLOAD_TIMEOUT": "60", "VEO3_RPM": "1000",
}


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache folder for the run: caches are keyed by their inputs (font files, mock clip recipes), so a
    test reading another test's entry gets the same bytes it would have made, without paying for them. Under
    pytest-xdist the workers share it (each cache writes through a rename, so concurrent writers are safe)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, above each worker's own
    cache = base / "cache"
    cache.mkdir(exist_ok=True)
    return cache


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path, shared_cache):
    for name in list(os.environ):
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)  # the state folder (and ledger) comes from HOME
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared_cache))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def fake():
    with FakeGoogle(Script()) as server:
        yield server


@pytest.fixture
def real_env(fake, monkeypatch, tmp_path):
    """Real google-genai SDK pointed at the fake server; agents on the mock LLM."""
    env = {"GEMINI_API_KEY": "test-key-not-secret", "GOOGLE_GEMINI_BASE_URL": fake.url, "REELCREW_LLM": "mock",
           "VEO3_MOCK_MODE": "false", "REELCREW_OUTPUT_DIR": str(tmp_path / "out"), **FAST}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def vertex_project(fake, monkeypatch, tmp_path):
    """Vertex AI on a project whose service account gets its tokens from the fake, with stray API keys set.

    The keys are what `.env.example` invites users to fill in; they must not win over the project.
    """
    env = {"GOOGLE_GENAI_USE_VERTEXAI": "true", "GOOGLE_CLOUD_PROJECT": "test-project",
           "GOOGLE_CLOUD_LOCATION": "us-central1", "GOOGLE_VERTEX_BASE_URL": fake.url,
           "GOOGLE_APPLICATION_CREDENTIALS": str(fake.service_account(tmp_path / "service-account.json")),
           "GEMINI_API_KEY": "stray-gemini-key-not-secret", "GOOGLE_API_KEY": "stray-google-key-not-secret"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the whole run (skips, with the reason, where it cannot be started)."""
    try:
        server = servers.start_postgres()
    except Exception as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    """One Redis server for the whole run (skips, with the reason, where it cannot be started)."""
    try:
        server = servers.start_redis()
    except Exception as exc:
        pytest.skip(f"Redis unavailable: {exc}")
    yield server
    server.cleanup()


@pytest.fixture
def redis(redis_server):
    """The run's Redis, emptied for this test (its queues and rate buckets start clean); a test that restarts
    it leaves it running."""
    if not redis_server.ping():
        redis_server.start()
    redis_server.flush()
    return redis_server


@pytest.fixture(scope="session")
def s3_server():
    """One S3-compatible server (moto) for the whole run (skips, with the reason, where it cannot be started)."""
    try:
        server = servers.start_s3()
    except Exception as exc:
        pytest.skip(f"S3 stand-in unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh bucket on the S3 stand-in, set as the artifact store (REELCREW_ARTIFACTS, the endpoint and
    credentials in the environment, inherited by the CLI processes a test starts): its server, bucket and a client."""
    bucket = s3_server.bucket()
    env = {"REELCREW_ARTIFACTS": f"s3://{bucket}/studio", "AWS_ENDPOINT_URL": s3_server.url,
           "AWS_ACCESS_KEY_ID": "test-access-key", "AWS_SECRET_ACCESS_KEY": "test-secret-key",
           "AWS_REGION": "us-east-1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return SimpleNamespace(server=s3_server, bucket=bucket, prefix="studio", client=s3_server.client())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def ledger_db(request, monkeypatch):
    """Runs a test on each ledger: the default SQLite file in the test's state folder, and a fresh
    PostgreSQL database (REELCREW_DB, inherited by the CLI processes the test starts)."""
    if request.param == "postgresql":
        monkeypatch.setenv("REELCREW_DB", request.getfixturevalue("postgres").database())
    return request.param


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so a fixture can tell a failed test (browser screenshots)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
