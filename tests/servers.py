"""Real servers for tests, started once per test run: unprivileged, on 127.0.0.1, in a temporary folder.

PostgreSQL comes from Debian's `postgresql` package (`make setup` installs it when it runs as root).
Its binaries are used directly (`initdb`, `pg_ctl`), never the package's own cluster or service: a
fresh cluster per test run, owned by `nobody` when we are root (initdb refuses to run as root),
with a fresh database per test. Missing binaries skip the tests that need them, saying why.

The S3 stand-in is moto's server mode (a test dependency, `S3Server`). Later servers follow the same shape:
`find_*`, a class with `start`/`stop`, and a session fixture in conftest.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from glob import glob
from pathlib import Path

PG_USER = "reelcrew"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL server binaries (`/usr/lib/postgresql/<version>/bin`), or None."""
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]), reverse=True)
    return Path(found[0]).parent if found else None


class PostgresServer:
    """A throwaway PostgreSQL cluster; `database()` gives a new empty database's URL."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="reelcrew-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse root: run them as nobody, in a folder it owns
            shutil.chown(self.root, "nobody", "nogroup")
            self.as_user = ["runuser", "-u", "nobody", "--"]

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stderr[-2000:]}\n{log}")

    def start(self) -> PostgresServer:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", PG_USER, "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} "
                   "-c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={PG_USER} dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                            "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """A running server, or an exception whose message says why not (shown as the skip reason)."""
    bindir = find_postgres_bin()
    if bindir is None:
        raise LookupError("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin): "
                          "run `make setup` as root, or `apt-get install postgresql`")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        raise LookupError("running as root without runuser: cannot start PostgreSQL unprivileged")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise LookupError("psycopg is not installed: run `make setup`") from None
    server = PostgresServer(bindir)
    try:
        return server.start()
    except Exception:
        server.stop()
        raise


class S3Server:
    """moto's S3 server (`moto[server]`, a test dependency) on 127.0.0.1: an S3-compatible store for the artifact
    tests; `bucket()` makes a new empty bucket. Any access key is accepted, as by a fresh MinIO."""

    def __init__(self) -> None:
        import sys

        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="reelcrew-s3-"))
        self.log = self.root / "server.log"
        self.command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        import time

        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "MOTO_PORT": str(self.port)})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # a readiness probe, not a timing assumption: it polls the port
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited: {self.log.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not open its port within 60 s")

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="test-access-key", aws_secret_access_key="test-secret-key")

    def bucket(self) -> str:
        name = f"reelcrew-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start_s3() -> S3Server:
    """A running S3 stand-in, or an exception whose message says why not (shown as the skip reason)."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        raise LookupError(f"moto[server] is not installed ({exc.name}): run `make setup`") from None
    server = S3Server()
    try:
        return server.start()
    except Exception:
        server.stop()
        raise
