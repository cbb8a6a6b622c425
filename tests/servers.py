"""Real servers for tests, started once per test run: unprivileged, on 127.0.0.1, in a temporary folder.

PostgreSQL comes from Debian's `postgresql` package (`make setup` installs it when it runs as root).
Its binaries are used directly (`initdb`, `pg_ctl`), never the package's own cluster or service: a
fresh cluster per test run, owned by `nobody` when we are root (initdb refuses to run as root),
with a fresh database per test. Missing binaries skip the tests that need them, saying why.

Redis comes from Debian's `redis-server` package the same way (`make servers`): one throwaway server
per run, as `nobody` when we are root, no persistence. The S3 stand-in is moto's server mode (a test
dependency, `S3Server`). Each follows the same shape: `find_*`, a class with `start`/`stop`, and a session
fixture in conftest.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
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


def find_redis_server() -> str | None:
    """Debian's `redis-server` binary (package redis-server), or None."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)


class RedisServer:
    """A throwaway Redis on 127.0.0.1 (no persistence: a restart loses every message, as a crashed broker
    without AOF would; that is what the reconciler must survive). `restart()` stops and starts it on the
    same port, for the broker-restart test."""

    def __init__(self, binary: str):
        self.binary = binary
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="reelcrew-redis-"))
        self.log = self.root / "server.log"
        self.as_user: dict[str, str] = {}
        self.process: subprocess.Popen | None = None
        if os.geteuid() == 0:  # never run a server as root: as nobody, in a folder it owns (Popen's user= execs
            shutil.chown(self.root, "nobody", "nogroup")  # it directly, so a kill reaches redis itself)
            self.as_user = {"user": "nobody", "group": "nogroup"}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.root),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no",
             "--logfile", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **self.as_user)  # type: ignore[call-overload]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}\n{log}")
            if self.ping():
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING within 30 s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def flush(self) -> None:
        """Forget every key (between tests: queues, rate buckets)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            sock.recv(16)

    def keys(self, pattern: str) -> list[bytes]:
        import redis

        return redis.Redis.from_url(self.url).keys(pattern)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # no persistence to save: a kill is a clean stop here
            self.process.wait(timeout=30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_redis() -> RedisServer:
    """A running Redis, or an exception whose message says why not (shown as the skip reason)."""
    binary = find_redis_server()
    if binary is None:
        raise LookupError("redis-server not found: run `make servers` as root, or `apt-get install redis-server`")
    server = RedisServer(binary)
    try:
        return server.start()
    except Exception:
        server.cleanup()
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
