"""The ledger: productions, stage outputs, clips, operation receipts, costs, quota state, events.

One per machine by default (`<state dir>/reelcrew.db`, shared by every output folder), one per
cluster with a PostgreSQL `REELCREW_DB`. This module owns every query and every transaction;
the rest of reelcrew calls its methods with ids and models and never sees a table.

Locking lives here and only here. A write transaction takes the ledger's write lock first:
SQLite `BEGIN IMMEDIATE` (WAL, busy timeout, synchronous=FULL); PostgreSQL a transaction-level
advisory lock (`pg_advisory_xact_lock(LOCK_KEY)`). Every decision that spans rows (operations in
flight, budget, breaker, claims) is a read-then-write inside one such transaction, so under
PostgreSQL's READ COMMITTED it is as serial as under SQLite; one lock for all writers is simple
and correct, and writes are few and short (a clip makes about ten). Reads for status, cost and
dashboards use plain transactions and never wait for the write lock.

Every receipt is also appended (and fsync'd) to a JSON-lines journal beside the ledger inside the
transaction that commits it: what survives when the ledger does not (`replay_journal`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DatabaseError, OperationalError

from reelcrew.errors import ConfigError, ReelcrewError
from reelcrew.files import new_owner, owner_alive
from reelcrew.models import ClipStatus, Production, ProductionStatus, VideoClip, VideoPrompt

meta = MetaData()

schema_info = Table("schema_info", meta, Column("key", String, primary_key=True), Column("value", String))
productions = Table(
    "productions", meta,
    Column("id", String, primary_key=True), Column("topic", Text, nullable=False), Column("language", String),
    Column("scenes", Integer), Column("aspect_ratio", String), Column("style", Text),
    Column("status", String, nullable=False, default="queued"), Column("failed_stage", String), Column("error", Text),
    Column("created_at", Float), Column("updated_at", Float), Column("owner", String),
    Column("lease_until", Float, default=0.0), Column("folder", Text),
    # the rest of its identity and its mode (reelcrew.identity), recorded when it is planned
    Column("resolution", String), Column("clip_seconds", Integer), Column("model", String), Column("writers", String),
    Column("backend", String),
    Column("continuity", String))  # schema 16: how its clips hold together (none, last_frame, ...)
stage_outputs = Table(
    "stage_outputs", meta,
    Column("production_id", String, primary_key=True), Column("stage", String, primary_key=True),
    Column("data", Text, nullable=False), Column("llm_answers", Integer, default=0), Column("created_at", Float))
clips = Table(
    "clips", meta,
    Column("key", String, primary_key=True),  # natural key: hash of model, prompt and parameters
    Column("production_id", String, nullable=False), Column("idx", Integer, nullable=False),
    Column("model", String, nullable=False), Column("prompt", Text, nullable=False),
    Column("status", String, nullable=False), Column("operation_name", String), Column("video_uri", Text),
    Column("path", Text), Column("sha256", String), Column("duration", Float),
    Column("retries", Integer, default=0), Column("error", Text), Column("cost_usd", Float, default=0.0),
    Column("possible_duplicate", Boolean, default=False),
    Column("lease_owner", String), Column("lease_until", Float, default=0.0),
    Column("submitted_at", Float), Column("updated_at", Float),
    Column("artifact", Text),  # schema 12: where its bytes live for every worker (`s3://…` or the local path)
    Column("qc", Text),  # the quality check of its file (reelcrew.video.qc), JSON; schema 15
    # schema 20: when it last asked for a Veo slot while waiting (the ledger's line: Store._my_turn); 0 once out of
    # the line (granted, parked); NULL never asked
    Column("wants_slot_at", Float))
production_clips = Table(
    "production_clips", meta,
    Column("production_id", String, primary_key=True), Column("idx", Integer, primary_key=True),
    Column("clip_key", String, nullable=False))
receipts = Table(
    "receipts", meta,
    Column("id", Integer, primary_key=True, autoincrement=True), Column("clip_key", String, nullable=False),
    Column("operation_name", String), Column("outcome", String, nullable=False),  # accepted | ambiguous
    Column("attempt", Integer), Column("possible_duplicate", Boolean, default=False), Column("at", Float))
# schema 12: a production's final and side files in the artifact store (reelcrew.artifacts), with their sha256
production_artifacts = Table(
    "production_artifacts", meta,
    Column("production_id", String, primary_key=True), Column("name", String, primary_key=True),
    Column("ref", Text, nullable=False), Column("sha256", String, nullable=False), Column("size", Integer),
    Column("stored_at", Float))
# replaying a journal or a manifest looks receipts up by clip: without it a restore is quadratic in receipts
receipts_by_clip = Index("ix_receipts_clip_key", receipts.c.clip_key)
costs = Table(
    "costs", meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("clip_key", String, nullable=False, unique=True),
    Column("production_id", String), Column("model", String), Column("resolution", String),
    Column("seconds", Float), Column("usd", Float), Column("operation_name", String),
    Column("day", String), Column("at", Float),
    # kind: "clip" (Veo), "llm" (a writers' Gemini call: clip_key is then "llm:<owner>", seconds unused) or
    # "grounding" (the SEO's Google Search call: its tokens and search fee, clip_key "grounding:<owner>")
    Column("kind", String, default="clip"), Column("input_tokens", Integer), Column("output_tokens", Integer))
quota_state = Table(
    "quota_state", meta,
    Column("name", String, primary_key=True), Column("consecutive_failures", Integer, default=0),
    Column("open_until", Float, default=0.0), Column("reason", Text), Column("probe_owner", String),
    Column("probe_until", Float, default=0.0), Column("updated_at", Float))
events = Table(
    "events", meta,
    Column("id", Integer, primary_key=True, autoincrement=True), Column("at", Float),
    Column("production_id", String), Column("clip_index", Integer), Column("stage", String),
    Column("kind", String), Column("message", Text), Column("attempt", Integer),
    Column("actor", String))  # who asked for it through the API (a token's name), schema 9
# a scene made again by the pipeline itself (reelcrew.followups, schema 15), from the clip it replaces to the new one:
# kind `rephrase` (a filtered prompt rewritten) or `regenerate` (a clip the quality check flagged, a new variant)
clip_followups = Table(
    "clip_followups", meta,
    Column("id", Integer, primary_key=True, autoincrement=True), Column("production_id", String, nullable=False),
    Column("idx", Integer, nullable=False), Column("kind", String, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("from_key", String, nullable=False), Column("to_key", String, nullable=False), Column("reason", Text),
    Column("prompt", Text), Column("at", Float))
# continuity references (schema 17, reelcrew.video.continuity_refs): the images a production sends with every clip,
# by content hash, in order; the files are copies in the production's folder (`references/`)
production_references = Table(
    "production_references", meta,
    Column("production_id", String, primary_key=True), Column("position", Integer, primary_key=True),
    Column("sha256", String, nullable=False), Column("name", Text, nullable=False), Column("mime", String))
# reelcrew serve (schema 9): API tokens (only a hash is kept), the options a production was created with through
# the API (so a restarted server resumes it the same way), and the answers remembered for Idempotency-Key.
api_tokens = Table(
    "api_tokens", meta,
    Column("name", String, primary_key=True), Column("role", String, nullable=False),
    Column("token_sha256", String, nullable=False, unique=True), Column("daily_budget_usd", Float),
    Column("created_at", Float), Column("revoked_at", Float))
web_requests = Table(
    "web_requests", meta,
    Column("production_id", String, primary_key=True), Column("options", Text, nullable=False),
    Column("created_by", String), Column("approved_by", String), Column("created_at", Float))
idempotency_keys = Table(
    "idempotency_keys", meta,
    Column("token_name", String, primary_key=True), Column("key", String, primary_key=True),
    Column("request_sha256", String, nullable=False), Column("status_code", Integer), Column("body", Text),
    Column("at", Float))
# observability (schema 14): every submit attempt with its outcome (receipts keep only accepted and ambiguous ones),
# and each Veo operation's end and its file processing (download + validation): what /metrics and `reelcrew slo` read
submit_attempts = Table(
    "submit_attempts", meta,
    Column("id", Integer, primary_key=True, autoincrement=True), Column("at", Float, nullable=False),
    Column("clip_key", String), Column("production_id", String), Column("backend", String),
    Column("outcome", String, nullable=False),  # accepted quota_minute quota_day quota_other unavailable rejected ...
    Column("waited_seconds", Float))  # from the clip's turn to this submit: the gates' wait
operations = Table(
    "operations", meta,
    Column("name", String, primary_key=True), Column("clip_key", String), Column("production_id", String),
    Column("backend", String), Column("submitted_at", Float),
    Column("ended_at", Float), Column("ending", String),  # done | filtered | failed | timeout | lost
    Column("processing_started_at", Float), Column("processed_at", Float),
    Column("processing", String))  # ok | failed: the file's download and validation
alerts_sent = Table(  # when each kind of alert was last sent by any process: once per interval across the fleet
    "alerts_sent", meta, Column("kind", String, primary_key=True), Column("at", Float, nullable=False))

# Celery (schema 11): a task that exhausted its retries, with what re-queues it (`reelcrew dead retry ID`).
dead_letters = Table(
    "dead_letters", meta,
    Column("id", Integer, primary_key=True, autoincrement=True), Column("task", String, nullable=False),
    Column("production_id", String), Column("clip_key", String), Column("arguments", Text, nullable=False),
    Column("error", Text), Column("attempts", Integer), Column("at", Float), Column("retried_at", Float))
# Celery (schema 11): the last step sent (or running) of each chain of work (a production's writers and render,
# each clip's submit and follow), so Beat's reconciler finds work whose message was lost with a killed worker or a
# restarted Redis: a step overdue with no live runner is sent again (the bodies are idempotent by ids).
task_chains = Table(
    "task_chains", meta,
    Column("chain", String, primary_key=True), Column("production_id", String, nullable=False),
    Column("step", Text, nullable=False), Column("due_at", Float, nullable=False), Column("runner", String),
    Column("updated_at", Float))


# Named migrations, in the style of simonw/llm's migrations.py rather than Alembic: the schema is a dozen
# tables that only ever gain columns, every process opens (and so migrates) the ledger on start, and the
# migration must run inside the ledger's own write lock on both databases; Alembic's scripts, env.py and
# version table would add a tool and a second locking story for that. Each step is idempotent (it looks
# before it alters) and is recorded by number in schema_info; append, never edit.
def _add_columns(conn: Connection, table: str, columns: dict[str, str]) -> None:
    have = {c["name"] for c in inspect(conn).get_columns(table)}
    for name, sql_type in columns.items():
        if name not in have:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")


def _web_tables(conn: Connection) -> None:
    meta.create_all(conn, tables=[api_tokens, web_requests, idempotency_keys])
    _add_columns(conn, "events", {"actor": "VARCHAR"})


def _artifact_references(conn: Connection) -> None:
    """v12: where each clip's and final's bytes live; a done clip's reference is its local file until then."""
    _add_columns(conn, "clips", {"artifact": "TEXT"})
    meta.create_all(conn, tables=[production_artifacts])
    conn.execute(update(clips).where(clips.c.status == "done", clips.c.path.is_not(None), clips.c.artifact.is_(None))
                 .values(artifact=clips.c.path))


def _films(conn: Connection) -> None:
    _add_columns(conn, "clips", {"qc": "TEXT"})
    meta.create_all(conn, tables=[clip_followups])


def _continuity(conn: Connection) -> None:
    """v16: each production's continuity mode; every production before it was made with none."""
    _add_columns(conn, "productions", {"continuity": "VARCHAR"})
    conn.execute(update(productions).where(productions.c.continuity.is_(None)).values(continuity="none"))


def _rename_production_status(conn: Connection, old: str, new: str) -> None:
    conn.execute(update(productions).where(productions.c.status == old).values(status=new))


def _production_identity(conn: Connection) -> None:
    """v7: each production's identity and mode (reelcrew.identity) get columns, filled from what the ledger
    knows (its prompts, its clips' model and operation names, its writers' token costs). A production whose id
    the new identity moves (a mock rehearsal, a resolution, clip length or model other than the old defaults)
    is renamed to that id everywhere, so the same command (or its real-mode twin) finds the right one."""
    from reelcrew.identity import ProductionMode, production_id

    _add_columns(conn, "productions", {"resolution": "VARCHAR", "clip_seconds": "INTEGER", "model": "VARCHAR",
                                       "writers": "VARCHAR", "backend": "VARCHAR"})
    asked_columns = [productions.c[name] for name in ("id", "topic", "language", "scenes", "aspect_ratio", "style")]
    for row in conn.execute(select(*asked_columns)).mappings().all():  # columns of later schemas are not there yet
        known = _known_identity(conn, row["id"])
        if known:
            conn.execute(update(productions).where(productions.c.id == row["id"]).values(**known))
        mode = ProductionMode(writers=known.get("writers", "gemini"), backend=known.get("backend", "gemini"))
        asked = (row["topic"], row["language"], row["scenes"], row["aspect_ratio"], row["style"])
        new_id = production_id(*asked, rehearsal=mode.rehearsal, **{k: known[k] for k in ("resolution",
                                                                                          "clip_seconds", "model")
                                                                   if k in known})
        if row["id"] != production_id(*asked) or new_id == row["id"]:
            continue  # not an id the old scheme made from these fields, or one the new scheme keeps
        if not conn.execute(select(productions.c.id).where(productions.c.id == new_id)).first():
            for table in (stage_outputs, clips, production_clips, costs, events):
                conn.execute(update(table).where(table.c.production_id == row["id"]).values(production_id=new_id))
            conn.execute(update(productions).where(productions.c.id == row["id"]).values(id=new_id))


def _known_identity(conn: Connection, pid: str) -> dict[str, Any]:
    """What an older ledger says about a production's resolution, clip length, Veo model, writers and backend."""
    known: dict[str, Any] = {}
    linked = select(production_clips.c.clip_key).where(production_clips.c.production_id == pid)
    rows = conn.execute(select(clips.c.prompt, clips.c.model, clips.c.operation_name)
                        .where(clips.c.key.in_(linked))).all()
    names = [name for _, _, name in rows if name] + [name for (name,) in conn.execute(
        select(receipts.c.operation_name).where(receipts.c.clip_key.in_(linked))).all() if name]
    saved = conn.execute(select(stage_outputs.c.data).where(stage_outputs.c.production_id == pid,
                                                            stage_outputs.c.stage == "prompts")).scalar()
    try:
        prompt = json.loads(saved)["prompts"][0] if saved else json.loads(rows[0][0]) if rows else None
    except (ValueError, KeyError, IndexError, TypeError):  # unreadable: the identity stays unknown, never a crash
        prompt = None
    if isinstance(prompt, dict):
        known.update(resolution=prompt.get("resolution", "720p"), clip_seconds=prompt.get("duration", 8))
    if rows:
        known["model"] = rows[0][1]
    for prefix, backend in (("mock/", "mock"), ("models/", "gemini"), ("projects/", "vertex")):
        if any(name.startswith(prefix) for name in names):
            known["backend"] = backend
            break
    llm = conn.execute(select(func.count()).select_from(costs).where(costs.c.production_id == pid,
                                                                     costs.c.kind == "llm")).scalar_one()
    if llm:
        known["writers"] = "gemini"
    elif known.get("backend") == "mock":
        known["writers"] = "mock"  # --mock sets both
    return known


MIGRATIONS: dict[int, tuple[str, Callable[[Connection], None]]] = {
    2: ("event attempts", lambda c: _add_columns(c, "events", {"attempt": "INTEGER"})),
    3: ("production owner", lambda c: _add_columns(c, "productions", {"owner": "VARCHAR"})),
    4: ("production claims and folders", lambda c: _add_columns(c, "productions", {"lease_until": "FLOAT",
                                                                                 "folder": "TEXT"})),
    5: ("writer token costs", lambda c: _add_columns(c, "costs", {"kind": "VARCHAR", "input_tokens": "INTEGER",
                                                                 "output_tokens": "INTEGER"})),
    6: ("production status names of DESIGN.md", lambda c: _rename_production_status(c, "pending", "queued")),
    7: ("production identity and mode", _production_identity),
    9: ("serve: api tokens, web requests, idempotency keys, event actors", lambda c: _web_tables(c)),
    10: ("receipts indexed by clip (journal and manifest replay)",
         lambda c: receipts_by_clip.create(c, checkfirst=True)),
    11: ("celery: dead letters and task chains", lambda c: meta.create_all(c, tables=[dead_letters, task_chains])),
    12: ("artifact references and checksums (clips and finals)", _artifact_references),
    14: ("observability: submit attempts and operation ends",
         lambda c: meta.create_all(c, tables=[submit_attempts, operations, alerts_sent])),
    15: ("films: clip quality checks, filtered prompts rewritten", lambda c: _films(c)),
    16: ("continuity mode per production", lambda c: _continuity(c)),
    17: ("continuity references: each production's reference images",
         lambda c: meta.create_all(c, tables=[production_references])),
    20: ("the line for Veo slots: when a waiting clip last asked",
         lambda c: _add_columns(c, "clips", {"wants_slot_at": "FLOAT"})),
}
SCHEMA_VERSION = max(MIGRATIONS)
# Every table but schema_info, by the name a backup's counts and `ledger import` print for it. A table added to the
# schema belongs here and in COPIED_AS_IS, IMPORTED_BY_RULE or NOT_IMPORTED (tests/test_backup_tables.py fails
# until it is).
TABLE_LABELS = {
    "productions": "productions", "stage_outputs": "stages", "clips": "clips", "receipts": "receipts",
    "costs": "costs", "events": "events", "production_clips": "scene links", "clip_followups": "follow-ups",
    "production_artifacts": "artifacts", "submit_attempts": "submit attempts", "operations": "operations",
    "alerts_sent": "alerts sent", "dead_letters": "dead letters", "task_chains": "task chains",
    "api_tokens": "tokens", "web_requests": "web requests", "idempotency_keys": "idempotency keys",
    "quota_state": "quota states", "production_references": "reference images",
}
# `ledger import` copies these rows when no row here has the same match columns: (match, columns numbered here,
# values reset); productions and clips have rules of their own.
COPIED_AS_IS: dict[Table, tuple[tuple[str, ...], tuple[str, ...], dict[str, Any] | None]] = {
    stage_outputs: (("production_id", "stage"), (), None),
    production_clips: (("production_id", "idx"), (), None),
    receipts: (("clip_key", "outcome", "at"), ("id",), None),
    costs: (("clip_key",), ("id",), None),
    events: (("at", "kind", "message"), ("id",), None),
    clip_followups: (("production_id", "idx", "kind", "attempt"), ("id",), None),
    production_artifacts: (("production_id", "name"), (), None),
    submit_attempts: (("at", "clip_key", "outcome"), ("id",), None),  # the SLOs' history comes along
    operations: (("name",), (), None),
    alerts_sent: (("kind",), (), None),  # an alert just sent from the old ledger is not sent again at once
    dead_letters: (("task", "at"), ("id",), None),  # new ids here: `reelcrew dead list` shows them
    task_chains: (("chain",), (), {"runner": None}),  # a runner of another ledger runs nothing here
    api_tokens: (("name",), (), None),  # the same tokens (hashes only) keep working, revoked ones stay revoked
    web_requests: (("production_id",), (), None),  # a production created through the API resumes the same way
    idempotency_keys: (("token_name", "key"), (), None),
    production_references: (("production_id", "position"), (), None),  # continuity references: the images' hashes
}
IMPORTED_BY_RULE = {
    "productions": "Store._import_productions: claims dropped, old status names mapped",
    "clips": "Store._import_clips: a clip here takes a receipt or a file the old one has",
}
NOT_IMPORTED = {
    "quota_state": "breaker state of the machine that wrote the old ledger; this one's submits rebuild its own",
    "schema_info": "this ledger's own schema version",
}
IDENTITY_COLUMNS = ("resolution", "clip_seconds", "model", "writers", "backend", "continuity")
# an imported production: a claim from another ledger means nothing here; `pending` is the pre-6 `queued`
OLD_PRODUCTION_STATUS = {"running": "queued", "pending": "queued"}
LOCK_KEY = 0x7265656C  # "reel": the PostgreSQL advisory lock every write transaction takes first
IN_FLIGHT = ("submitting", "submitted")  # at Veo (or about to be): what VEO3_MAX_CONCURRENT counts
PROMISED = ("submitting", "submitted", "downloading")  # will be charged unless they fail: what budgets count
SETTLED = {"done", "filtered", "failed", "ambiguous"}
WAITING = ("pending", "paused", "submitting")  # may ask for a Veo slot (`submitting`: a dead claim's stale intent)
RESERVE_BYTES = 1 << 20  # room kept beside a SQLite ledger for the receipts of a disk that fills up (Store._receipt)
LEDGER_ROOM = 4 << 20  # what a SQLite ledger needs free: its WAL grows to ~1000 pages (4 MiB) between checkpoints
_events_log = logging.getLogger("reelcrew.events")
# Listeners told of every event this process records (reelcrew.alerts maps some to webhooks). A listener must return
# at once and never raise into the work: it is called after the transaction committed, on the worker's thread.
_listeners: list[Callable[[dict[str, Any]], None]] = []


def add_listener(listener: Callable[[dict[str, Any]], None]) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Callable[[dict[str, Any]], None]) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def _tell(kind: str, message: str, **facts: Any) -> None:
    for listener in list(_listeners):
        try:
            listener({"kind": kind, "message": message, **facts})
        except Exception:  # a listener's trouble is never the work's
            _events_log.debug("event listener failed", exc_info=True)


@dataclass
class Spend:
    """What a budget decision needs, read in the claim's transaction."""

    in_flight: int  # other clips promised (between intent and cost row)
    run: float  # charged since this run started
    today: float  # charged this UTC day


@dataclass
class ProductionClaim:
    granted: bool
    folder: str | None
    status: ProductionStatus
    holder: str | None = None  # the live owner that holds it, when not granted


def _sqlite_pragmas(engine: Engine, read_only: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        if not read_only:  # both write to the file: a read-only ledger keeps the mode it was written in
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # receipts and costs are money
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        reading = read_only or conn.get_execution_options().get("reelcrew_read")
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


def read_only_url(path: Path) -> str:
    """SQLite read-only: `mode=ro`; `immutable=1` when the folder cannot be written (read-only, not ours, or full)
    and no WAL is pending (a WAL reader must create the -shm file beside the ledger; with no -wal there is nothing
    immutable would miss)."""
    from urllib.parse import quote

    from reelcrew.storage import LOW_SPACE, free_bytes

    folder_writable = os.access(path.parent, os.W_OK) and (free_bytes(path) or 0) >= LOW_SPACE
    wal = path.with_name(path.name + "-wal")
    wal_pending = wal.exists() and wal.stat().st_size > 0
    flag = "mode=ro" if folder_writable or wal_pending else "immutable=1"
    return f"sqlite:///file:{quote(str(path))}?{flag}&uri=true"


def integrity_problem(path: Path) -> str | None:
    """What SQLite's `quick_check` finds wrong with the file (None: no damage found, or it could not look).

    The only judge of "corrupt": an I/O, space or permission failure is never called corruption."""
    import sqlite3
    from urllib.parse import quote

    if not path.exists():
        return None
    for flag in ("mode=ro", "immutable=1"):
        try:
            conn = sqlite3.connect(f"file:{quote(str(path))}?{flag}", uri=True)
        except sqlite3.OperationalError:
            continue
        try:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.OperationalError:
            continue  # could not read it this way (e.g. the -shm cannot be created): not a verdict
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            return str(exc)
        finally:
            conn.close()
        return None if rows == ["ok"] else "; ".join(rows[:3])
    return None


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other databases)."""
    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


class Store:
    def __init__(self, url: str, journal: Path | None = None, read_only: bool = False):
        """Open (and migrate) the ledger. `read_only`: a SQLite ledger opened with `mode=ro` (or `immutable=1` in a
        folder nobody can write), no migration and no lock: what `status` and `cost` need on a read-only folder."""
        self.url = url
        self.read_only = read_only
        path = sqlite_path(url)
        if path is not None and not read_only:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._open_error(exc, path) from exc
        self.journal = journal or (path.with_name(path.stem + ".receipts.jsonl") if path else None)
        self._journal_lock = threading.Lock()
        try:
            self.engine = create_engine(read_only_url(path) if read_only and path else url, future=True,
                                        pool_pre_ping=path is None)
        except Exception as exc:  # unknown dialect, missing driver
            raise ConfigError(f"cannot open the ledger {safe_url(url)}: {exc}",
                              "REELCREW_DB is a file path, sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
                              ) from None
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            _sqlite_pragmas(self.engine, read_only)
        self._reader = self.engine.execution_options(reelcrew_read=True)
        self.reserve = path.with_name(path.name + ".reserve") if path is not None and not read_only else None
        try:
            self.check_schema() if read_only else self.migrate()
        except OperationalError as exc:
            if path is None:
                raise ConfigError(f"cannot reach the ledger {safe_url(url)} ({exc.orig})",
                                  "start the database server or fix REELCREW_DB") from exc
            raise self._open_error(exc, path) from exc
        except DatabaseError as exc:
            raise self._open_error(exc, path) from exc
        self.keep_reserve()

    def _open_error(self, exc: BaseException, path: Path | None) -> ReelcrewError:
        """The true cause of a ledger that cannot be opened or written: a full disk, a read-only folder or a
        permission problem; corrupt only when SQLite's own integrity check says so; never "move it aside"."""
        from reelcrew.storage import as_storage_error

        where = path or Path(self.url)
        storage = as_storage_error(exc, where, f"the ledger {where}", LEDGER_ROOM,
                                   elsewhere="REELCREW_STATE_DIR (or REELCREW_DB)")
        if storage is not None:
            return storage
        reason = str(getattr(exc, "orig", None) or exc)
        verdict = integrity_problem(path) if path is not None else None
        if verdict:
            return ConfigError(f"the ledger {where} is corrupt: SQLite's integrity check says {verdict}",
                               "run `reelcrew repair --ledger`: it rebuilds the ledger from the receipts journal "
                               f"({self.journal}), the manifests and the files, and never resubmits an operation that "
                               "has a receipt; keep the ledger and the journal where they are, or restore a backup")
        return ConfigError(f"cannot open the ledger {where} ({reason}); SQLite's integrity check finds no damage",
                           "check the file's owner and permissions and that no other program holds it, then run the "
                           "same command again; the ledger and its receipts are intact")

    def check_schema(self) -> None:
        """A read-only ledger cannot be migrated: it must already be at this reelcrew's schema."""
        with self._read() as c:
            row = c.execute(select(schema_info.c.value).where(schema_info.c.key == "version")).first()
        version = int(row[0]) if row else 0
        if version < SCHEMA_VERSION:
            raise ConfigError(f"the ledger {safe_url(self.url)} is at schema {version}, older than this reelcrew's "
                              f"{SCHEMA_VERSION}, and it is read-only here (it cannot be migrated)",
                              "run any reelcrew command once where the ledger is writable")

    # -- plumbing ---------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction, holding the ledger's write lock. Getting the lock is retried while another
        process holds it past busy_timeout; the body is not (a context manager cannot run it twice).

        A full disk, a read-only folder or a permission problem (the ledger's or the journal's) comes out as
        a StorageError naming it; the transaction is rolled back, so nothing half-written stays."""
        try:
            with ExitStack() as stack:
                for attempt in range(20):
                    try:
                        conn = stack.enter_context(self.engine.begin())
                        break
                    except OperationalError as exc:
                        if "locked" not in str(exc) or attempt == 19:
                            raise
                        time.sleep(0.05 * (attempt + 1))
                if self.dialect == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
                yield conn
        except (OperationalError, OSError) as exc:
            path = sqlite_path(self.url)
            if path is None and not isinstance(exc, OSError):
                raise
            from reelcrew.storage import as_storage_error

            where = path if path is not None and not isinstance(exc, OSError) else (self.journal or Path("."))
            storage = as_storage_error(exc, where, f"the ledger {where}" if where == path else f"the journal {where}",
                                       LEDGER_ROOM, elsewhere="REELCREW_STATE_DIR (or REELCREW_DB)")
            if storage is None:
                raise
            raise storage from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read-only transaction: never waits for (or holds) the write lock."""
        with self._reader.begin() as conn:
            yield conn

    def migrate(self) -> None:
        with self._write() as c:
            meta.create_all(c)
            row = c.execute(select(schema_info.c.value).where(schema_info.c.key == "version")).first()
            version = int(row[0]) if row else 0
            if version == 0:
                c.execute(insert(schema_info).values(key="version", value=str(SCHEMA_VERSION)))
                version = SCHEMA_VERSION
            for target in sorted(v for v in MIGRATIONS if v > version):
                MIGRATIONS[target][1](c)
                c.execute(update(schema_info).where(schema_info.c.key == "version").values(value=str(target)))

    def close(self) -> None:
        self.engine.dispose()

    def log(self, kind: str, message: str, production_id: str | None = None, clip_index: int | None = None,
            stage: str | None = None, attempt: int | None = None) -> None:
        """An event in the ledger and a structured line in the log file."""
        with self._write() as c:
            c.execute(insert(events).values(at=time.time(), production_id=production_id, clip_index=clip_index,
                                            stage=stage, kind=kind, message=message, attempt=attempt))
        _events_log.info(message, extra={"kind": kind, "production_id": production_id, "clip_index": clip_index,
                                         "stage": stage, "attempt": attempt})
        _tell(kind, message, production_id=production_id, stage=stage)

    # -- productions and stages -------------------------------------------------------
    def upsert_production(self, p: Production) -> None:
        """Record a new production; an existing one keeps its row, and only gets the identity and mode fields
        its row lacks (a production from before they were recorded)."""
        now = time.time()
        with self._write() as c:
            row = c.execute(select(productions).where(productions.c.id == p.id)).mappings().first()
            if row is None:
                c.execute(insert(productions).values(**p.model_dump(mode="json"), created_at=now, updated_at=now))
                return
            missing = {name: getattr(p, name) for name in IDENTITY_COLUMNS
                       if row[name] is None and getattr(p, name) is not None}
            if missing:
                c.execute(update(productions).where(productions.c.id == p.id).values(**missing))

    def claim_production(self, pid: str, owner: str, ttl: float, folder: Path) -> ProductionClaim:
        """Take the production's writing and rendering stages for `owner`, unless another live owner holds them
        or it is cancelled.

        The first claim records the folder its files go to; later claims keep it."""
        now = time.time()
        with self._write() as c:
            row = c.execute(select(productions).where(productions.c.id == pid)).mappings().one()
            status = ProductionStatus(row["status"])
            held = (row["owner"] and row["owner"] != owner and status == ProductionStatus.running
                    and (row["lease_until"] or 0) > now and owner_alive(row["owner"]))
            if held:
                return ProductionClaim(False, row["folder"], status, row["owner"])
            if status == ProductionStatus.cancelled:  # only `reelcrew retry` (uncancel) starts it again
                return ProductionClaim(False, row["folder"], status)
            chosen = row["folder"] or str(folder)
            c.execute(update(productions).where(productions.c.id == pid).values(
                status=ProductionStatus.running.value, owner=owner, lease_until=now + ttl, folder=chosen,
                updated_at=now))
        return ProductionClaim(True, chosen, status)

    def set_production_status(self, pid: str, status: ProductionStatus, failed_stage: str | None = None,
                              error: str | None = None) -> None:
        """A new status; leaving `running` releases the production's claim. `cancelled` stays (a run that
        was working on it ends without overwriting it); only a new claim or `uncancel` moves it on."""
        values: dict[str, Any] = dict(status=status.value, failed_stage=failed_stage, error=error,
                                      updated_at=time.time())
        if status != ProductionStatus.running:
            values.update(owner=None, lease_until=0.0)
        with self._write() as c:
            changed = c.execute(update(productions).where(productions.c.id == pid,
                                                          productions.c.status != ProductionStatus.cancelled.value)
                                .values(**values)).rowcount
        if changed and status in (ProductionStatus.failed, ProductionStatus.incomplete):
            _tell(f"production_{status.value}", error or status.value, production_id=pid, stage=failed_stage)

    def release_production(self, pid: str, owner: str) -> None:
        """End `owner`'s lease on the production at once, status unchanged (a Celery step that wrote or rendered it
        is over: the next step, on any worker, may claim it without waiting for the lease to run out)."""
        with self._write() as c:
            c.execute(update(productions).where(productions.c.id == pid, productions.c.owner == owner)
                      .values(lease_until=0.0))

    def uncancel(self, pid: str) -> None:
        """A cancelled production becomes `queued` again (an explicit `reelcrew retry`)."""
        with self._write() as c:
            c.execute(update(productions).where(productions.c.id == pid,
                                                productions.c.status == ProductionStatus.cancelled.value)
                      .values(status=ProductionStatus.queued.value, failed_stage=None, error=None,
                              updated_at=time.time()))

    def production_owner(self, pid: str) -> str | None:
        """The owner of the production's claim, if it says it is running."""
        with self._read() as c:
            return c.execute(select(productions.c.owner).where(productions.c.id == pid)).scalar()

    def production(self, pid: str) -> Production | None:
        with self._read() as c:
            row = c.execute(select(productions).where(productions.c.id == pid)).mappings().first()
        return _production_from_row(row) if row else None

    def all_productions(self) -> list[Production]:
        with self._read() as c:
            rows = c.execute(select(productions).order_by(productions.c.created_at)).mappings().all()
        return [_production_from_row(r) for r in rows]

    def save_stage(self, pid: str, stage: str, data: Any, llm_answers: int = 0) -> None:
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        with self._write() as c:
            c.execute(stage_outputs.delete().where(
                (stage_outputs.c.production_id == pid) & (stage_outputs.c.stage == stage)))
            c.execute(insert(stage_outputs).values(production_id=pid, stage=stage, data=text, llm_answers=llm_answers,
                                                   created_at=time.time()))

    def replace_stage(self, pid: str, stage: str, data: str) -> None:
        """A stage's output changed in place by the pipeline itself (a rewritten prompt), its LLM answers kept."""
        with self._write() as c:
            c.execute(update(stage_outputs).where((stage_outputs.c.production_id == pid)
                                                  & (stage_outputs.c.stage == stage)).values(data=data))

    def delete_stage(self, pid: str, stage: str) -> None:
        with self._write() as c:
            c.execute(stage_outputs.delete().where(
                (stage_outputs.c.production_id == pid) & (stage_outputs.c.stage == stage)))

    def adopt_stage_edits(self, pid: str, data: dict[str, str], messages: dict[str, str]) -> None:
        """Edited stage files adopted (reelcrew.edits): each stage's output replaced in place (its LLM answer
        count kept) with an `edit` event naming the file and fields, all in one transaction."""
        now = time.time()
        with self._write() as c:
            for stage, text in data.items():
                c.execute(update(stage_outputs).where((stage_outputs.c.production_id == pid)
                                                      & (stage_outputs.c.stage == stage)).values(data=text))
                c.execute(insert(events).values(at=now, production_id=pid, stage=stage, kind="edit",
                                                message=messages[stage]))
        for stage in data:
            _events_log.info(messages[stage], extra={"kind": "edit", "production_id": pid, "clip_index": None,
                                                     "stage": stage, "attempt": None})

    def stage(self, pid: str, stage: str) -> str | None:
        with self._read() as c:
            row = c.execute(select(stage_outputs.c.data).where(
                (stage_outputs.c.production_id == pid) & (stage_outputs.c.stage == stage))).first()
        return row[0] if row else None

    def llm_answers(self, pid: str) -> int:
        with self._read() as c:
            return int(c.execute(select(func.coalesce(func.sum(stage_outputs.c.llm_answers), 0)).where(
                stage_outputs.c.production_id == pid)).scalar_one())

    # -- clips -------------------------------------------------------------------------
    def ensure_clip(self, pid: str, prompt: VideoPrompt, model: str, rehearsal: bool = False,
                    options: dict[str, Any] | None = None) -> VideoClip:
        """The clip row for this prompt: existing (any production, any folder) or new and pending.
        `options`: the request parameters that enter the key (registry.veo_options)."""
        key = prompt.clip_key(model, rehearsal=rehearsal, **(options or {}))
        now = time.time()
        with self._write() as c:
            if not c.execute(select(clips.c.key).where(clips.c.key == key)).first():
                c.execute(insert(clips).values(key=key, production_id=pid, idx=prompt.index, model=model,
                                               prompt=prompt.model_dump_json(), status=ClipStatus.pending.value,
                                               retries=0, cost_usd=0.0, possible_duplicate=False, lease_until=0.0,
                                               updated_at=now))
            c.execute(production_clips.delete().where((production_clips.c.production_id == pid)
                                                      & (production_clips.c.idx == prompt.index)))
            c.execute(insert(production_clips).values(production_id=pid, idx=prompt.index, clip_key=key))
        return self.clip(key)

    def record_references(self, pid: str, images: list[dict[str, str]]) -> list[dict[str, Any]]:
        """The production's reference images (sha256, name, mime each), recorded once: a production keeps the
        images it was planned with (its id covers their hashes), so resume and retry send the same ones."""
        with self._write() as c:
            if not c.execute(select(production_references.c.position)
                             .where(production_references.c.production_id == pid)).first():
                for position, image in enumerate(images, 1):
                    c.execute(insert(production_references).values(production_id=pid, position=position,
                                                                   sha256=image["sha256"], name=image["name"],
                                                                   mime=image.get("mime")))
        return self.production_references(pid)

    def production_references(self, pid: str) -> list[dict[str, Any]]:
        with self._read() as c:
            return [dict(r) for r in c.execute(select(production_references)
                                               .where(production_references.c.production_id == pid)
                                               .order_by(production_references.c.position)).mappings().all()]

    def clip(self, key: str) -> VideoClip:
        with self._read() as c:
            return _clip_from_row(c.execute(select(clips).where(clips.c.key == key)).mappings().one())

    def production_clips(self, pid: str) -> list[VideoClip]:
        with self._read() as c:
            rows = c.execute(select(clips, production_clips.c.idx.label("pidx"))
                             .join(production_clips, production_clips.c.clip_key == clips.c.key)
                             .where(production_clips.c.production_id == pid)
                             .order_by(production_clips.c.idx)).mappings().all()
        out = []
        for r in rows:
            clip = _clip_from_row(r)
            clip.index = r["pidx"]
            out.append(clip)
        return out

    def all_clips(self) -> list[VideoClip]:
        with self._read() as c:
            return [_clip_from_row(r) for r in c.execute(select(clips).order_by(clips.c.updated_at)).mappings().all()]

    def all_clip_rows(self) -> list[dict]:
        with self._read() as c:
            return [dict(r) for r in c.execute(select(clips)).mappings().all()]

    def update_clip(self, key: str, **values: Any) -> None:
        with self._write() as c:
            self._update_clip(c, key, **values)

    @staticmethod
    def _update_clip(conn: Connection, key: str, **values: Any) -> None:
        values = {k: (v.value if isinstance(v, ClipStatus) else v) for k, v in values.items()}
        values["updated_at"] = time.time()
        conn.execute(update(clips).where(clips.c.key == key).values(**values))

    def reset_clip(self, key: str) -> None:
        """`reelcrew retry`: a failed, filtered or ambiguous clip becomes pending again (ambiguous: flagged)."""
        with self._write() as c:
            row = c.execute(select(clips.c.status).where(clips.c.key == key)).one()
            if row.status in SETTLED - {"done"}:
                self._update_clip(c, key, status=ClipStatus.pending, error=None, retries=0, operation_name=None,
                                  possible_duplicate=row.status == "ambiguous")

    def set_clip_qc(self, key: str, qc: dict) -> None:
        """The quality check of the clip's file (reelcrew.video.qc), kept beside the clip."""
        with self._write() as c:
            self._update_clip(c, key, qc=json.dumps(qc, ensure_ascii=False))

    def record_followup(self, pid: str, index: int, kind: str, attempt: int, from_key: str, to_key: str, reason: str,
                        prompt: str) -> None:
        """A scene made again by the pipeline (reelcrew.followups): the row and its event in one transaction."""
        now = time.time()
        what = {"rephrase": "filtered; prompt rewritten", "regenerate": "flagged by the quality check; regenerated"}
        message = f"clip {index} {what.get(kind, kind)} ({reason}), attempt {attempt}"
        event = {"rephrase": "rephrased", "regenerate": "qc_regenerated"}.get(kind, kind)
        with self._write() as c:
            c.execute(insert(clip_followups).values(production_id=pid, idx=index, kind=kind, attempt=attempt,
                                                    from_key=from_key, to_key=to_key, reason=reason, prompt=prompt,
                                                    at=now))
            c.execute(insert(events).values(at=now, production_id=pid, clip_index=index, stage="clips",
                                            kind=event, message=message, attempt=attempt))
        _events_log.info(message, extra={"kind": event, "production_id": pid, "clip_index": index,
                                         "stage": "clips", "attempt": attempt})

    def followups(self, pid: str, index: int | None = None, kind: str | None = None) -> list[dict]:
        """The production's scenes made again by the pipeline, oldest first (one scene's, one kind's)."""
        stmt = select(clip_followups).where(clip_followups.c.production_id == pid).order_by(clip_followups.c.id)
        if index is not None:
            stmt = stmt.where(clip_followups.c.idx == index)
        if kind is not None:
            stmt = stmt.where(clip_followups.c.kind == kind)
        with self._read() as c:
            return [dict(r) for r in c.execute(stmt).mappings().all()]

    def prompt_edited_by_user(self, pid: str, index: int) -> bool:
        """Did a person edit this clip's prompt (the API's PATCH, or prompts.json adopted)? Their words are kept."""
        field = f"prompts.{index - 1}.prompt"
        with self._read() as c:
            rows = c.execute(select(events.c.clip_index, events.c.message).where(
                events.c.production_id == pid, events.c.kind == "edit", events.c.stage == "prompts")).all()
        return any(clip_index == index or field in (message or "") for clip_index, message in rows)

    # -- claims ---------------------------------------------------------------------------
    def claim_clip(self, key: str, owner: str, ttl: float, max_in_flight: int, hold_for: float,
                   refuse: Callable[[Spend], str | None], run_started: float, live_for: float = 3.0
                   ) -> tuple[str, float]:
        """Atomically decide what `owner` does with the clip, in one write transaction:

        `settled` (done, filtered, failed or ambiguous by now: look again), `wait` (another live claim holds
        it, the breaker says wait, VEO3_MAX_CONCURRENT operations are in flight, or clips ahead of it in the
        line ask for the free slots), `attach` (a receipt exists: poll it), `paused` (a budget refuses it) or
        `submit` (intent committed: send it). A clip that would submit waits in the ledger's line (`_my_turn`):
        a waiter keeps its place while it asked within `live_for` seconds."""
        now = time.time()
        with self._write() as c:
            row = c.execute(select(clips).where(clips.c.key == key)).mappings().one()
            if row["status"] in SETTLED:
                return "settled", 0.0
            if (row["lease_owner"] and row["lease_owner"] != owner and (row["lease_until"] or 0) > now
                    and owner_alive(row["lease_owner"])):
                return "wait", -1.0  # another live claim has it
            if row["operation_name"] and row["status"] in ("submitted", "submitting", "paused", "downloading"):
                self._update_clip(c, key, status=ClipStatus.submitted, lease_owner=owner, lease_until=now + ttl)
                return "attach", 0.0
            if (row["wants_slot_at"] or 0.0) < now - live_for / 3:  # in line, or still there (a write only
                c.execute(update(clips).where(clips.c.key == key).values(wants_slot_at=now))  # now and then)
            if hold_for > 0:
                return "wait", min(hold_for, 1.0)
            free = max_in_flight - self._in_flight(c, key)
            breaker = self._quota(c, "veo")
            # the breaker's one probe skips the line: every other claim is held by the breaker, so the clips ahead
            # of it would keep their places and nobody would submit until the probe's lease ran out
            probe = breaker["probe_owner"] == owner and (breaker["probe_until"] or 0.0) > now
            if free <= 0 or not (probe or self._my_turn(c, key, free, now - live_for)):
                return "wait", -1.0
            if breaker["open_until"] > now:  # paused (a 429-day, say) since this claim asked the
                return "wait", 0.0  # breaker: look again, and the breaker now parks it (no second paid 429)
            spend = Spend(self._promised(c, key), self._spent(c, since=run_started), self._spent(c, day=utc_day()))
            refusal = "its production was cancelled" if self._cancelled(c, key) else refuse(spend)
            if refusal:
                self._update_clip(c, key, status=ClipStatus.paused, error=f"not submitted: {refusal}",
                                  lease_owner=None, lease_until=0.0, wants_slot_at=0.0)
            else:
                stale_intent = row["status"] == "submitting"  # a process died between intent and receipt
                self._update_clip(c, key, status=ClipStatus.submitting, lease_owner=owner, lease_until=now + ttl,
                                  possible_duplicate=bool(row["possible_duplicate"]) or stale_intent,
                                  wants_slot_at=0.0)  # out of the line (0: it asked before)
        if refusal:
            if "budget" in refusal:  # told once committed (an alert), never from inside the transaction
                _tell("budget_reached", refusal, production_id=row["production_id"], stage="clips")
            return "paused", 0.0
        return "submit", 0.0

    @staticmethod
    def _my_turn(conn: Connection, key: str, free: int, live_since: float) -> bool:
        """The ledger's line for Veo slots, the same for every process and machine: of the clips that asked since
        `live_since` (a waiter whose step was lost, its worker killed, drops out by itself: it cannot block the
        line), the `free` first get the free slots, in the order their productions' prompts were ready (then
        production created, then scene). So the first production's clips are made first and its final is cut
        while the others' clips are made, instead of every production's clips finishing together. A clip recorded
        since `live_since` that has not asked yet (NULL: its step is on its way) is in line too, so the clips of
        a production that were sent together are not overtaken by whichever other step asks first."""
        prompts = stage_outputs.alias("prompts_ready")
        ready = func.coalesce(prompts.c.created_at, productions.c.created_at, 0.0)
        first = conn.execute(
            select(clips.c.key)
            .select_from(clips.outerjoin(prompts, (prompts.c.production_id == clips.c.production_id)
                                         & (prompts.c.stage == "prompts"))
                         .outerjoin(productions, productions.c.id == clips.c.production_id))
            .where(or_(clips.c.wants_slot_at >= live_since,
                       clips.c.wants_slot_at.is_(None) & (clips.c.updated_at >= live_since)
                       & (clips.c.status == ClipStatus.pending.value)),
                   clips.c.operation_name.is_(None), clips.c.status.in_(WAITING))
            .order_by(ready, func.coalesce(productions.c.created_at, 0.0), clips.c.idx, clips.c.key)
            .limit(free)).scalars().all()
        return key in first

    @staticmethod
    def _cancelled(conn: Connection, key: str) -> bool:
        """Every production using this clip is cancelled: it is not submitted (checked inside the claim, so a
        `reelcrew cancel` committed before it stops the submit even in another process)."""
        statuses = conn.execute(select(productions.c.status).join(
            production_clips, production_clips.c.production_id == productions.c.id).where(
            production_clips.c.clip_key == key)).scalars().all()
        return bool(statuses) and all(status == ProductionStatus.cancelled.value for status in statuses)

    @staticmethod
    def _in_flight(conn: Connection, key: str) -> int:
        """Operations at Veo: a receipt counts whoever holds it; an intent only while its process lives."""
        others = conn.execute(select(clips.c.status, clips.c.lease_owner).where(
            clips.c.status.in_(IN_FLIGHT), clips.c.key != key)).all()
        return sum(1 for status, owner in others if status == "submitted" or owner_alive(owner))

    @staticmethod
    def _promised(conn: Connection, key: str) -> int:
        return int(conn.execute(select(func.count()).select_from(clips).where(
            clips.c.status.in_(PROMISED), clips.c.key != key)).scalar_one())

    def in_flight(self) -> int:
        """Operations in flight at Veo now, machine- (or cluster-) wide."""
        with self._read() as c:
            return self._in_flight(c, "")

    def renew_leases(self, owners: list[str], ttl: float) -> None:
        """Push out the leases of these owners' claims (clips and productions) by `ttl` seconds."""
        until = time.time() + ttl
        with self._write() as c:
            c.execute(update(clips).where(clips.c.lease_owner.in_(owners)).values(lease_until=until))
            c.execute(update(productions).where(productions.c.owner.in_(owners),
                                                productions.c.status == ProductionStatus.running.value)
                      .values(lease_until=until))

    def release_clip(self, key: str, owner: str | None, status: ClipStatus, **values: Any) -> None:
        """Give the clip up with a new status. A claim that was taken over meanwhile is left alone."""
        with self._write() as c:
            current = c.execute(select(clips.c.lease_owner).where(clips.c.key == key)).scalar()
            if owner is not None and current not in (None, owner):
                return
            self._update_clip(c, key, status=status, lease_owner=None, lease_until=0.0, **values)

    # -- receipts and money ---------------------------------------------------------------
    def record_submit(self, key: str, owner: str, operation_name: str, attempt: int, possible_duplicate: bool,
                      ttl: float) -> None:
        """The receipt: journal line (fsync'd) and ledger row in one step, before anything else happens."""
        now = time.time()

        def commit() -> None:
            with self._write() as c:
                clip = _clip_from_row(c.execute(select(clips).where(clips.c.key == key)).mappings().one())
                self._journal({"at": now, "clip_key": key, "operation_name": operation_name, "outcome": "accepted",
                               "attempt": attempt, "possible_duplicate": possible_duplicate, **_clip_identity(clip)})
                self._update_clip(c, key, status=ClipStatus.submitted, operation_name=operation_name,
                                  submitted_at=now, lease_owner=owner, lease_until=now + ttl, error=None)
                c.execute(insert(receipts).values(clip_key=key, operation_name=operation_name, outcome="accepted",
                                                  attempt=attempt, possible_duplicate=possible_duplicate, at=now))
        self._receipt(commit)

    def record_ambiguous(self, key: str, attempt: int, error: str) -> None:
        """A submit Veo may have accepted: receipt `ambiguous`, clip parked, never resent blindly."""
        now = time.time()

        def commit() -> None:
            with self._write() as c:
                clip = _clip_from_row(c.execute(select(clips).where(clips.c.key == key)).mappings().one())
                self._journal({"at": now, "clip_key": key, "operation_name": None, "outcome": "ambiguous",
                               "attempt": attempt, "possible_duplicate": True, **_clip_identity(clip)})
                c.execute(insert(receipts).values(clip_key=key, operation_name=None, outcome="ambiguous",
                                                  attempt=attempt, possible_duplicate=True, at=now))
                self._update_clip(c, key, status=ClipStatus.ambiguous, lease_owner=None, lease_until=0.0,
                                  possible_duplicate=True, error=error)
        self._receipt(commit)

    def _receipt(self, commit: Callable[[], None]) -> None:
        """Commit a receipt; on a full disk, give up the reserve beside the ledger and commit it again, once.

        Veo has already accepted (and will charge) the submit: losing its receipt to a full disk would make the
        next run resubmit it. The journal line may then be written twice; replaying matches it by its time."""
        from reelcrew.storage import FULL, StorageError

        try:
            commit()
        except StorageError as exc:
            if exc.cause != FULL or self.reserve is None or not self.reserve.exists():
                raise
            self.reserve.unlink()
            _events_log.warning("disk full: the ledger's reserve %s was released to save a receipt", self.reserve)
            commit()

    def keep_reserve(self) -> None:
        """A small preallocated file beside a SQLite ledger, given up only to save a receipt on a full disk
        (recreated on the next open that finds the room)."""
        if self.reserve is None or self.reserve.exists():
            return
        try:
            with open(self.reserve, "wb") as fh:
                os.posix_fallocate(fh.fileno(), 0, RESERVE_BYTES)
        except OSError:  # no room (or no fallocate here): no reserve this time
            self.reserve.unlink(missing_ok=True)

    def finish_clip(self, key: str, path: Path, sha256: str, duration: float, usd: float,
                    artifact: str | None = None, samples: int = 1, billed_seconds: float | None = None) -> None:
        """Done: the validated (and, with a store, stored) file, its reference and its one charge, in one
        transaction. `samples`: the videos Veo made for it (VEO3_SAMPLE_COUNT), all billed: the charge's seconds.
        `billed_seconds`: what Veo bills for one of them when it differs from the file's length (an extension)."""
        now = time.time()
        with self._write() as c:
            clip = _clip_from_row(c.execute(select(clips).where(clips.c.key == key)).mappings().one())
            self._update_clip(c, key, status=ClipStatus.done, path=str(path), sha256=sha256, duration=duration,
                              cost_usd=usd, error=None, lease_owner=None, lease_until=0.0,
                              artifact=artifact or str(path))
            if not c.execute(select(costs.c.id).where(costs.c.clip_key == key)).first():  # one charge per clip
                c.execute(insert(costs).values(clip_key=key, production_id=clip.production_id, model=clip.model,
                                               resolution=clip.prompt.resolution,
                                               seconds=(billed_seconds or duration) * samples,
                                               usd=usd,
                                               operation_name=clip.operation_name, at=now, day=utc_day(now),
                                               kind="clip"))

    def receipts(self, key: str | None = None) -> list[dict]:
        stmt = select(receipts).order_by(receipts.c.id)
        if key:
            stmt = stmt.where(receipts.c.clip_key == key)
        with self._read() as c:
            return [dict(r) for r in c.execute(stmt).mappings().all()]

    def production_receipts(self, pid: str) -> dict[str, list[dict]]:
        """Every receipt of the production's clips, by clip key."""
        keys = select(production_clips.c.clip_key).where(production_clips.c.production_id == pid)
        with self._read() as c:
            rows = c.execute(select(receipts).where(receipts.c.clip_key.in_(keys)).order_by(receipts.c.id)).mappings()
            out: dict[str, list[dict]] = {}
            for r in rows:
                out.setdefault(r["clip_key"], []).append(dict(r))
        return out

    @staticmethod
    def _spent(conn: Connection, since: float | None = None, day: str | None = None) -> float:
        charged = select(func.coalesce(func.sum(costs.c.usd), 0.0))
        if since is not None:
            charged = charged.where(costs.c.at >= since)
        if day is not None:
            charged = charged.where(costs.c.day == day)
        return float(conn.execute(charged).scalar_one())

    def spent_usd(self, since: float | None = None, day: str | None = None) -> float:
        """Money charged so far (clips that finished), optionally since a moment or on one UTC day."""
        with self._read() as c:
            return self._spent(c, since, day)

    def record_llm_cost(self, production_id: str | None, model: str, input_tokens: int, output_tokens: int,
                        usd: float, kind: str = "llm") -> None:
        """One writers' Gemini call in the cost ledger (tokens and price); it counts against the budgets.
        `kind` "grounding": the SEO's Google Search call (reelcrew.grounding), its tokens plus the search fee."""
        now = time.time()
        with self._write() as c:
            c.execute(insert(costs).values(clip_key=f"{kind}:{new_owner()}", production_id=production_id, model=model,
                                           kind=kind, input_tokens=input_tokens, output_tokens=output_tokens,
                                           usd=usd, seconds=0.0, day=utc_day(now),
                                           at=now))

    def cost_rows(self) -> list[dict]:
        with self._read() as c:
            return [dict(r) for r in c.execute(select(costs).order_by(costs.c.at)).mappings().all()]

    # -- the breaker ---------------------------------------------------------------------------
    def _quota(self, conn: Connection, name: str) -> dict:
        row = conn.execute(select(quota_state).where(quota_state.c.name == name)).mappings().first()
        if row is None:
            conn.execute(insert(quota_state).values(name=name, consecutive_failures=0, open_until=0.0,
                                                    probe_until=0.0, updated_at=time.time()))
            row = conn.execute(select(quota_state).where(quota_state.c.name == name)).mappings().one()
        return dict(row)

    @staticmethod
    def _set_quota(conn: Connection, name: str, **values: Any) -> None:
        conn.execute(update(quota_state).where(quota_state.c.name == name).values(**values, updated_at=time.time()))

    def breaker_gate(self, owner: str, threshold: int, probe_ttl: float, name: str = "veo"
                     ) -> tuple[str, float, str | None]:
        """`("open", until, reason)`, `("probing", seconds, None)` while another claim probes, or `("go", 0, None)`
        (after enough failures this claim becomes the one probe)."""
        now = time.time()
        with self._write() as c:
            q = self._quota(c, name)
            if q["open_until"] > now:
                return "open", q["open_until"], q["reason"]
            if q["consecutive_failures"] >= threshold:
                if (q["probe_owner"] and q["probe_owner"] != owner and q["probe_until"] > now
                        and owner_alive(q["probe_owner"])):
                    return "probing", min(1.0, q["probe_until"] - now), None
                self._set_quota(c, name, probe_owner=owner, probe_until=now + probe_ttl)
        return "go", 0.0, None

    def breaker_success(self, name: str = "veo") -> None:
        with self._write() as c:
            self._quota(c, name)
            self._set_quota(c, name, consecutive_failures=0, open_until=0.0, reason=None, probe_owner=None,
                            probe_until=0.0)

    def breaker_failure(self, reason: str, threshold: int, open_for: float, name: str = "veo") -> int:
        """Count one more consecutive failure (opening the breaker at `threshold`); returns the count."""
        with self._write() as c:
            failures = self._quota(c, name)["consecutive_failures"] + 1
            values: dict[str, Any] = dict(consecutive_failures=failures, probe_owner=None, probe_until=0.0)
            if failures >= threshold:
                values.update(open_until=time.time() + open_for,
                              reason=f"breaker open after {failures} consecutive failures (last: {reason})")
            self._set_quota(c, name, **values)
        return failures

    def breaker_pause(self, until: float, reason: str, name: str = "veo") -> None:
        with self._write() as c:
            self._quota(c, name)
            self._set_quota(c, name, open_until=until, reason=reason)

    # -- the rate bucket -----------------------------------------------------------------------
    def rate_bucket(self, rates: list, table: str):
        """pyrate-limiter's bucket beside the ledger: a SQLite file next to a SQLite ledger (with a file lock, so
        every process on the machine shares it), or a table in the PostgreSQL ledger (shared by the cluster)."""
        from pyrate_limiter import SQLiteBucket

        path = sqlite_path(self.url)
        if path is not None:
            return SQLiteBucket.init_from_file(rates, table=table, db_path=str(path.with_name("rate.sqlite")),
                                               use_file_lock=True)
        from psycopg_pool import ConnectionPool
        from pyrate_limiter import PostgresBucket

        conninfo = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        pool = ConnectionPool(conninfo, min_size=1, max_size=4, open=True, kwargs={"autocommit": False})
        return PostgresBucket(pool, table, rates)

    def log_action(self, kind: str, message: str, actor: str, production_id: str | None = None,
                   clip_index: int | None = None, stage: str | None = None) -> None:
        """A state change someone asked for through the API, with the name of the token that asked."""
        with self._write() as c:
            c.execute(insert(events).values(at=time.time(), production_id=production_id, clip_index=clip_index,
                                            stage=stage, kind=kind, message=message, actor=actor))
        _events_log.info(message, extra={"kind": kind, "production_id": production_id, "clip_index": clip_index,
                                         "stage": stage, "actor": actor})
        _tell(kind, message, production_id=production_id, stage=stage)

    def events_after(self, after_id: int, pid: str | None = None, limit: int = 200) -> list[dict]:
        """Events with an id above `after_id`, oldest first: what an event stream sends next."""
        stmt = select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
        if pid:
            stmt = stmt.where(events.c.production_id == pid)
        with self._read() as c:
            return [dict(r) for r in c.execute(stmt).mappings().all()]

    def last_event_id(self) -> int:
        with self._read() as c:
            return int(c.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())

    # -- the web face: tokens, request options, idempotency (schema 9) ---------------------------
    def add_token(self, name: str, role: str, token_sha256: str, daily_budget_usd: float | None = None) -> bool:
        """A new API token by the hash of its secret; False when the name is taken."""
        with self._write() as c:
            if c.execute(select(api_tokens.c.name).where(api_tokens.c.name == name)).first():
                return False
            c.execute(insert(api_tokens).values(name=name, role=role, token_sha256=token_sha256,
                                                daily_budget_usd=daily_budget_usd, created_at=time.time()))
        return True

    def token_by_hash(self, token_sha256: str) -> dict | None:
        with self._read() as c:
            row = c.execute(select(api_tokens).where(api_tokens.c.token_sha256 == token_sha256,
                                                     api_tokens.c.revoked_at.is_(None))).mappings().first()
        return dict(row) if row else None

    def token_rows(self) -> list[dict]:
        """Every token (hashes left out)."""
        with self._read() as c:
            rows = c.execute(select(api_tokens).order_by(api_tokens.c.created_at)).mappings().all()
        return [{k: v for k, v in r.items() if k != "token_sha256"} for r in rows]

    def revoke_token(self, name: str) -> bool:
        with self._write() as c:
            done = c.execute(update(api_tokens).where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
                             .values(revoked_at=time.time()))
        return bool(done.rowcount)

    def save_web_request(self, pid: str, options: str, created_by: str) -> None:
        """The options a production was created with through the API (the first request's, kept)."""
        with self._write() as c:
            if not c.execute(select(web_requests.c.production_id).where(web_requests.c.production_id == pid)).first():
                c.execute(insert(web_requests).values(production_id=pid, options=options, created_by=created_by,
                                                      created_at=time.time()))

    def set_web_approval(self, pid: str, approved_by: str | None) -> None:
        with self._write() as c:
            c.execute(update(web_requests).where(web_requests.c.production_id == pid)
                      .values(approved_by=approved_by))

    def web_request(self, pid: str) -> dict | None:
        with self._read() as c:
            row = c.execute(select(web_requests).where(web_requests.c.production_id == pid)).mappings().first()
        return dict(row) if row else None

    def web_requests(self) -> list[dict]:
        with self._read() as c:
            return [dict(r) for r in c.execute(select(web_requests).order_by(web_requests.c.created_at)).mappings()]

    def spent_by_creator(self, created_by: str, day: str) -> float:
        """What the productions one token created were charged on a UTC day (its optional daily budget)."""
        mine = select(web_requests.c.production_id).where(web_requests.c.created_by == created_by)
        with self._read() as c:
            return float(c.execute(select(func.coalesce(func.sum(costs.c.usd), 0.0)).where(
                costs.c.day == day, costs.c.production_id.in_(mine))).scalar_one())

    def idempotent_answer(self, token_name: str, key: str) -> dict | None:
        with self._read() as c:
            row = c.execute(select(idempotency_keys).where(idempotency_keys.c.token_name == token_name,
                                                           idempotency_keys.c.key == key)).mappings().first()
        return dict(row) if row else None

    def remember_answer(self, token_name: str, key: str, request_sha256: str, status_code: int, body: str) -> None:
        with self._write() as c:
            if not c.execute(select(idempotency_keys.c.key).where(idempotency_keys.c.token_name == token_name,
                                                                  idempotency_keys.c.key == key)).first():
                c.execute(insert(idempotency_keys).values(token_name=token_name, key=key,
                                                          request_sha256=request_sha256, status_code=status_code,
                                                          body=body, at=time.time()))

    def quota_snapshot(self, now: float | None = None) -> dict:
        """The breaker and pause rows, and the submits in the last minute and this UTC day (the API's quota page)."""
        now = time.time() if now is None else now
        day_start = datetime.strptime(utc_day(now), "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
        with self._read() as c:
            gates = [dict(r) for r in c.execute(select(quota_state)).mappings().all()]
            minute = c.execute(select(func.count()).select_from(receipts).where(receipts.c.at >= now - 60)).scalar_one()
            day = c.execute(select(func.count()).select_from(receipts).where(receipts.c.at >= day_start)).scalar_one()
        return {"gates": gates, "submits_last_minute": int(minute), "submits_today": int(day),
                "in_flight": self.in_flight()}

    # -- observability (schema 14): submit attempts, operation ends, file processing -------------------------
    def record_attempt(self, key: str, production_id: str | None, backend: str, outcome: str,
                       waited_seconds: float | None, operation_name: str | None = None,
                       at: float | None = None) -> None:
        """One submit and how it ended (metrics count them by outcome and backend); an accepted one starts its
        operation's row. Written after the receipt, never instead of it: the receipt stays the money's truth.
        `at` (default now): a test or an import states the moment."""
        now = time.time() if at is None else at
        with self._write() as c:
            c.execute(insert(submit_attempts).values(at=now, clip_key=key, production_id=production_id,
                                                     backend=backend, outcome=outcome, waited_seconds=waited_seconds))
            if operation_name and not c.execute(select(operations.c.name).where(
                    operations.c.name == operation_name)).first():
                submitted = None if at is not None else c.execute(
                    select(clips.c.submitted_at).where(clips.c.key == key)).scalar()
                c.execute(insert(operations).values(name=operation_name, clip_key=key, production_id=production_id,
                                                    backend=backend, submitted_at=submitted or now))

    def end_operation(self, name: str, ending: str, at: float | None = None) -> None:
        """The operation ended (`done`, `filtered`, `failed`, `timeout` or `lost`); the first end is kept (a
        re-attach after a crash polls a done operation again)."""
        now = time.time() if at is None else at
        with self._write() as c:
            row = c.execute(select(operations.c.ended_at).where(operations.c.name == name)).first()
            if row is None:  # submitted before schema 14: what the clip row knows
                clip = c.execute(select(clips.c.key, clips.c.production_id, clips.c.submitted_at)
                                 .where(clips.c.operation_name == name)).first()
                c.execute(insert(operations).values(name=name, clip_key=clip[0] if clip else None,
                                                    production_id=clip[1] if clip else None,
                                                    submitted_at=clip[2] if clip else None, ended_at=now,
                                                    ending=ending))
            elif row[0] is None:
                c.execute(update(operations).where(operations.c.name == name).values(ended_at=now, ending=ending))

    def processing(self, name: str, outcome: str | None, at: float | None = None) -> None:
        """The file processing (download + validation) of an operation's video: None when it starts, then `ok`
        or `failed` when it ends (a stop or a full disk leaves it open: the next run takes it up)."""
        now = time.time() if at is None else at
        values: dict[str, Any] = ({"processing_started_at": now, "processed_at": None, "processing": None}
                                  if outcome is None else {"processed_at": now, "processing": outcome})
        with self._write() as c:
            c.execute(update(operations).where(operations.c.name == name).values(**values))

    def claim_alert(self, kind: str, interval: float, now: float | None = None) -> bool:
        """True when no process sent this kind of alert within `interval` seconds (and it is now marked sent)."""
        now = time.time() if now is None else now
        with self._write() as c:
            last = c.execute(select(alerts_sent.c.at).where(alerts_sent.c.kind == kind)).scalar()
            if last is not None and now - last < interval:
                return False
            if last is None:
                c.execute(insert(alerts_sent).values(kind=kind, at=now))
            else:
                c.execute(update(alerts_sent).where(alerts_sent.c.kind == kind).values(at=now))
        return True

    def operation_rows(self, since: float = 0.0) -> list[dict]:
        """Operations that ended, or whose file processing ended, at or after `since` (`reelcrew slo`)."""
        with self._read() as c:
            return [dict(r) for r in c.execute(select(operations).where(
                (operations.c.ended_at >= since) | (operations.c.processed_at >= since))).mappings()]

    def observability_facts(self) -> dict[str, Any]:
        """Everything /metrics reads, in one read transaction: counts grouped by bounded labels, and the
        durations its histograms are built from."""
        with self._read() as c:
            def grouped(*cols: Any) -> list[tuple]:
                return [tuple(r) for r in c.execute(select(*cols, func.count()).group_by(*cols))]

            return {
                "submits": grouped(submit_attempts.c.outcome, submit_attempts.c.backend),
                "clips": [tuple(r) for r in c.execute(select(clips.c.status, clips.c.error))],
                "productions": grouped(productions.c.status),
                "spent": [tuple(r) for r in c.execute(select(costs.c.kind, costs.c.model, func.sum(costs.c.usd))
                                                      .group_by(costs.c.kind, costs.c.model))],
                "llm": [tuple(r) for r in c.execute(select(stage_outputs.c.stage, stage_outputs.c.llm_answers))],
                "finals": [r[0] for r in c.execute(select(stage_outputs.c.data).where(
                    stage_outputs.c.stage == "final"))],
                "waits": [r[0] for r in c.execute(select(submit_attempts.c.waited_seconds).where(
                    submit_attempts.c.waited_seconds.is_not(None)))],
                "operations": [tuple(r) for r in c.execute(select(operations.c.ending, operations.c.submitted_at,
                                                                  operations.c.ended_at, operations.c.backend))],
                "processing": [tuple(r) for r in c.execute(select(
                    operations.c.processing, operations.c.processing_started_at, operations.c.processed_at).where(
                    operations.c.processed_at.is_not(None)))],
                "gates": [dict(r) for r in c.execute(select(quota_state)).mappings()],
                "spent_today": self._spent(c, day=utc_day()),
                "in_flight": self._in_flight(c, ""),
            }

    def recent_events(self, pid: str | None = None, limit: int = 20) -> list[dict]:
        stmt = select(events).order_by(events.c.id.desc()).limit(limit)
        if pid:
            stmt = stmt.where(events.c.production_id == pid)
        with self._read() as c:
            return [dict(r) for r in c.execute(stmt).mappings().all()][::-1]

    # -- the receipts journal -------------------------------------------------------------------
    def _journal(self, entry: dict) -> None:
        """Append one receipt line and fsync it; called inside the transaction that commits the receipt."""
        if self.journal is None:
            return
        line = (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode()
        with self._journal_lock:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)  # one write on an O_APPEND file: lines of two processes never interleave
                os.fsync(fd)
            finally:
                os.close(fd)

    def replay_journal(self, journal: Path | None = None) -> list[str]:
        """Put back every journalled receipt the ledger lacks (a lost, restored or imported ledger).

        A missing clip row is recreated from the journal; a clip that lost its receipt gets it back as
        `submitted` (re-attached and polled by the next run, never resubmitted) or `ambiguous`."""
        journal = journal or self.journal
        if journal is None or not journal.exists():
            return []
        fixed = []
        with self._write() as c:
            for line in journal.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line (power cut mid-write): its transaction did not commit either
                fixed += self._replay(c, entry)
        return fixed

    def _replay(self, c: Connection, e: dict) -> list[str]:
        key, name, outcome = e["clip_key"], e.get("operation_name"), e["outcome"]
        same = select(receipts.c.id).where(receipts.c.clip_key == key, receipts.c.outcome == outcome,
                                           receipts.c.at.between(e["at"] - 0.001, e["at"] + 0.001))
        if c.execute(same).first():
            return []
        out = []
        row = c.execute(select(clips).where(clips.c.key == key)).mappings().first()
        if row is None and e.get("prompt"):
            c.execute(insert(clips).values(key=key, production_id=e["production_id"], idx=e["index"], model=e["model"],
                                           prompt=e["prompt"], status="pending", retries=0, cost_usd=0.0,
                                           possible_duplicate=False, lease_until=0.0, updated_at=time.time()))
            if not c.execute(select(production_clips.c.clip_key).where(
                    production_clips.c.production_id == e["production_id"],
                    production_clips.c.idx == e["index"])).first():
                c.execute(insert(production_clips).values(production_id=e["production_id"], idx=e["index"],
                                                          clip_key=key))
            row = c.execute(select(clips).where(clips.c.key == key)).mappings().first()
            out.append(f"clip {key[:12]} of {e['production_id']} recreated from the journal")
        c.execute(insert(receipts).values(clip_key=key, operation_name=name, outcome=outcome, attempt=e.get("attempt"),
                                          possible_duplicate=bool(e.get("possible_duplicate")), at=e["at"]))
        out.append(f"receipt {outcome} {name or ''} for clip {key[:12]} replayed from the journal")
        if row is not None and row["status"] not in SETTLED and not row["operation_name"]:
            if outcome == "accepted":
                self._update_clip(c, key, status=ClipStatus.submitted, operation_name=name, submitted_at=e["at"],
                                  lease_owner=None, lease_until=0.0, error=None)
            elif row["status"] in ("pending", "submitting"):
                self._update_clip(c, key, status=ClipStatus.ambiguous, possible_duplicate=True, lease_owner=None,
                                  lease_until=0.0, error="submit outcome unknown (replayed from the journal): "
                                                         "`reelcrew retry` resubmits it when you decide")
        return out

    # -- importing an older ledger ------------------------------------------------------------------
    def import_ledger(self, source: str, folder: Path | None = None) -> dict[str, int]:
        """Copy an older ledger (a per-folder `reelcrew.db`, or any ledger URL) into this one. Nothing already
        here is overwritten, except a clip that lacks the receipt or the file the source has. Every receipt
        comes across, and the journal beside a SQLite source is replayed."""
        url = source if "://" in source else f"sqlite:///{Path(source).resolve()}"
        if url == self.url:
            raise ConfigError("the ledger to import is the ledger in use", "name an older ledger file or URL")
        old = Store(url)  # brings it to the current schema first, so its rows read like ours
        counts: dict[str, int] = {}
        with old._read() as src, self._write() as dst:
            counts["productions"] = self._import_productions(src, dst, folder)
            counts["clips"] = self._import_clips(src, dst)
            for table, (match, skip, reset) in COPIED_AS_IS.items():
                counts[TABLE_LABELS[table.name]] = _copy_missing(src, dst, table, match, skip=skip, reset=reset)
        old.close()
        if old.journal is not None and old.journal.exists():
            counts["journal receipts"] = sum(1 for line in self.replay_journal(old.journal) if "receipt" in line)
        return counts

    @staticmethod
    def _import_productions(src: Connection, dst: Connection, folder: Path | None) -> int:
        count = 0
        for row in src.execute(select(productions)).mappings():
            if dst.execute(select(productions.c.id).where(productions.c.id == row["id"])).first():
                continue
            values = dict(row)
            values.update(owner=None, lease_until=0.0,
                          status=OLD_PRODUCTION_STATUS.get(row["status"], row["status"]),
                          folder=row["folder"] or (str(folder / row["id"]) if folder else None))
            dst.execute(insert(productions).values(**values))
            count += 1
        return count

    def _import_clips(self, src: Connection, dst: Connection) -> int:
        count = 0
        for row in src.execute(select(clips)).mappings():
            values = dict(row, lease_owner=None, lease_until=0.0, wants_slot_at=None)  # a place in another line
            mine = dst.execute(select(clips).where(clips.c.key == row["key"])).mappings().first()
            if mine is None:
                dst.execute(insert(clips).values(**values))
                count += 1
            elif (mine["status"] != "done" and
                  (row["status"] == "done" or (row["operation_name"] and not mine["operation_name"]))):
                self._update_clip(dst, row["key"], **{k: v for k, v in values.items() if k != "key"})
                count += 1
        return count


    # -- backups, restores and reconciliation (service/backup.py, service/reconcile.py) --------------------------
    # -- dead letters (Celery tasks that exhausted their retries) ---------------------------------
    def add_dead_letter(self, task: str, arguments: dict, error: str, attempts: int,
                        production_id: str | None = None, clip_key: str | None = None) -> int:
        """Record a task that gave up; its id is what `reelcrew dead retry` takes."""
        with self._write() as c:
            result = c.execute(insert(dead_letters).values(
                task=task, production_id=production_id, clip_key=clip_key, arguments=json.dumps(arguments),
                error=error[:4000], attempts=attempts, at=time.time()))
            assert result.inserted_primary_key is not None
            letter_id = int(result.inserted_primary_key[0])
        self.log("dead_letter", f"{task} gave up after {attempts} attempt(s): {error[:300]}", production_id)
        return letter_id

    def dead_letters(self, include_retried: bool = False) -> list[dict]:
        """Newest first; `arguments` decoded. Retried letters are kept (with `retried_at`) but hidden by default."""
        query = select(dead_letters).order_by(dead_letters.c.id.desc())
        if not include_retried:
            query = query.where(dead_letters.c.retried_at.is_(None))
        with self._read() as c:
            rows = [dict(r) for r in c.execute(query).mappings().all()]
        for row in rows:
            row["arguments"] = json.loads(row["arguments"])
        return rows

    def take_dead_letter(self, letter_id: int) -> dict | None:
        """Mark a letter retried and return it, or None when it does not exist or was already retried (so two
        operators retrying at once re-queue it once)."""
        with self._write() as c:
            row = c.execute(select(dead_letters).where(dead_letters.c.id == letter_id,
                                                       dead_letters.c.retried_at.is_(None))).mappings().first()
            if row is None:
                return None
            c.execute(update(dead_letters).where(dead_letters.c.id == letter_id).values(retried_at=time.time()))
        letter = dict(row)
        letter["arguments"] = json.loads(letter["arguments"])
        return letter

    # -- task chains (what Beat's reconciler reads) -------------------------------------------------
    def mark_chains(self, marks: list[tuple[str, str, str, float, str | None]], ended: str | None = None) -> None:
        """Record each chain's latest step, `(chain, production_id, step_json, due_at, runner)` (runner: the owner
        running it now, or None when it waits in the broker), and forget `ended` (a chain with nothing left)
        unless a mark renews it; one transaction, so a step's follow-ups replace it atomically."""
        now = time.time()
        with self._write() as c:
            renewed = {m[0] for m in marks}
            if ended is not None and ended not in renewed:
                c.execute(task_chains.delete().where(task_chains.c.chain == ended))
            for chain, pid, step, due_at, runner in marks:
                values = dict(production_id=pid, step=step, due_at=due_at, runner=runner, updated_at=now)
                if c.execute(update(task_chains).where(task_chains.c.chain == chain).values(**values)).rowcount == 0:
                    c.execute(insert(task_chains).values(chain=chain, **values))

    def task_chains(self) -> list[dict]:
        with self._read() as c:
            return [dict(r) for r in c.execute(select(task_chains).order_by(task_chains.c.due_at)).mappings().all()]

    def schema_version(self) -> int:
        with self._read() as c:
            row = c.execute(select(schema_info.c.value).where(schema_info.c.key == "version")).first()
        return int(row[0]) if row else 0

    def counts(self) -> dict[str, int]:
        """Rows per table, read in one snapshot: what a backup's manifest records and a restore checks."""
        with self._read() as c:
            return self._counts(c)

    @staticmethod
    def _counts(conn: Connection) -> dict[str, int]:
        return {label: int(conn.execute(select(func.count()).select_from(meta.tables[name])).scalar_one())
                for name, label in TABLE_LABELS.items()}

    @contextmanager
    def snapshot(self) -> Iterator[tuple[str | None, dict[str, int]]]:
        """PostgreSQL: a repeatable-read transaction held open with its snapshot exported (for
        `pg_dump --snapshot`), and the row counts in that very snapshot. SQLite: (None, counts now)."""
        if self.dialect != "postgresql":
            yield None, self.counts()
            return
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                name = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar()
                yield name, self._counts(conn)

    def active_work(self) -> list[str]:
        """Claims held by live processes (a production being run, a clip being generated): what a restore
        must not pull the ledger from under."""
        now = time.time()
        with self._read() as c:
            prods = c.execute(select(productions.c.id, productions.c.owner).where(
                productions.c.status == ProductionStatus.running.value, productions.c.lease_until > now)).all()
            held = c.execute(select(clips.c.production_id, clips.c.idx, clips.c.lease_owner).where(
                clips.c.lease_owner.is_not(None), clips.c.lease_until > now)).all()
        out = [f"production {pid} (run by {owner})" for pid, owner in prods if owner_alive(owner)]
        out += [f"clip {idx} of {pid} (held by {owner})" for pid, idx, owner in held if owner_alive(owner)]
        return out

    def production_rows(self) -> list[dict]:
        """Every production with its folder, status and last change (backups, prune)."""
        with self._read() as c:
            return [dict(r) for r in c.execute(select(
                productions.c.id, productions.c.status, productions.c.folder, productions.c.updated_at)).mappings()]

    def clip_links(self) -> list[dict]:
        """Which production uses which clip key at which scene, with the clip's path (prune)."""
        with self._read() as c:
            return [dict(r) for r in c.execute(
                select(production_clips.c.production_id, production_clips.c.idx, production_clips.c.clip_key,
                       clips.c.path).join(clips, clips.c.key == production_clips.c.clip_key)).mappings()]

    def journal_gaps(self, journal: Path | None = None) -> int:
        """How many journalled receipts the ledger lacks (0: journal and ledger agree)."""
        journal = journal or self.journal
        if journal is None or not journal.exists():
            return 0
        with self._read() as c:
            have: dict[tuple[str, str], list[float]] = {}
            for key, outcome, at in c.execute(select(receipts.c.clip_key, receipts.c.outcome, receipts.c.at)):
                have.setdefault((key, outcome), []).append(at or 0.0)
        missing = 0
        for line in journal.read_text(encoding="utf-8").splitlines():
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not any(abs(at - e["at"]) <= 0.001 for at in have.get((e["clip_key"], e["outcome"]), [])):
                missing += 1
        return missing

    def adopt_production(self, prod: Production) -> bool:
        """Insert a production found in a folder's manifest.json, unless the ledger has it; True if inserted."""
        now = time.time()
        with self._write() as c:
            if c.execute(select(productions.c.id).where(productions.c.id == prod.id)).first():
                return False
            c.execute(insert(productions).values(**prod.model_dump(mode="json"), created_at=now, updated_at=now,
                                                 lease_until=0.0))
        return True

    def adopt_stage(self, pid: str, stage: str, data: str) -> bool:
        """A stage output found as a file in the production's folder, unless the ledger has it; True if added."""
        with self._write() as c:
            if c.execute(select(stage_outputs.c.stage).where(stage_outputs.c.production_id == pid,
                                                             stage_outputs.c.stage == stage)).first():
                return False
            c.execute(insert(stage_outputs).values(production_id=pid, stage=stage, data=data, llm_answers=0,
                                                   created_at=time.time()))
        return True

    def adopt_clip(self, pid: str, index: int, key: str, model: str, prompt: VideoPrompt, submits: list[dict],
                   finished: dict | None = None) -> list[str]:
        """What a manifest.json knows of one clip, given back to the ledger in one transaction: the row and its
        scene link if missing, every receipt it lacks, and then the furthest state the evidence proves:
        `done` (`finished`: a file whose sha256 matched, its duration and price), else `submitted` with the
        last accepted operation (re-attached by the next run, never resubmitted), else `ambiguous`."""
        out = []
        with self._write() as c:
            row = c.execute(select(clips).where(clips.c.key == key)).mappings().first()
            if row is None:
                c.execute(insert(clips).values(key=key, production_id=pid, idx=index, model=model,
                                               prompt=prompt.model_dump_json(), status="pending", retries=0,
                                               cost_usd=0.0, possible_duplicate=False, lease_until=0.0,
                                               updated_at=time.time()))
                out.append(f"clip {index} of {pid} recreated from its manifest")
            if not c.execute(select(production_clips.c.clip_key).where(production_clips.c.production_id == pid,
                                                                       production_clips.c.idx == index)).first():
                c.execute(insert(production_clips).values(production_id=pid, idx=index, clip_key=key))
            for r in submits:
                same = select(receipts.c.id).where(receipts.c.clip_key == key, receipts.c.outcome == r["outcome"],
                                                   receipts.c.at.between(r["at"] - 0.001, r["at"] + 0.001))
                if not c.execute(same).first():
                    c.execute(insert(receipts).values(clip_key=key, operation_name=r.get("operation"),
                                                      outcome=r["outcome"], possible_duplicate=bool(
                                                          r.get("possible_duplicate")), at=r["at"]))
                    out.append(f"receipt {r['outcome']} {r.get('operation') or ''} for clip {index} of {pid} "
                               "replayed from its manifest")
            row = c.execute(select(clips).where(clips.c.key == key)).mappings().one()
            accepted = [r for r in submits if r["outcome"] == "accepted" and r.get("operation")]
            if row["status"] != "done" and finished is not None:
                self._update_clip(c, key, status=ClipStatus.done, lease_owner=None, lease_until=0.0, error=None,
                                  path=finished["path"], sha256=finished["sha256"], duration=finished["duration"],
                                  cost_usd=finished["usd"], operation_name=row["operation_name"] or (
                                      accepted[-1]["operation"] if accepted else None))
                if not c.execute(select(costs.c.id).where(costs.c.clip_key == key)).first():
                    at = accepted[-1]["at"] if accepted else time.time()
                    c.execute(insert(costs).values(clip_key=key, production_id=pid, model=model,
                                                   resolution=prompt.resolution, seconds=finished["duration"],
                                                   usd=finished["usd"], operation_name=accepted[-1]["operation"]
                                                   if accepted else None, at=at, day=utc_day(at), kind="clip"))
                out.append(f"clip {index} of {pid}: done, its file matches the manifest's sha256 (not fetched again)")
            elif row["status"] not in SETTLED and not row["operation_name"] and accepted:
                self._update_clip(c, key, status=ClipStatus.submitted, operation_name=accepted[-1]["operation"],
                                  submitted_at=accepted[-1]["at"], lease_owner=None, lease_until=0.0, error=None)
                out.append(f"clip {index} of {pid}: re-attached to {accepted[-1]['operation']} (not resubmitted)")
            elif row["status"] in ("pending", "submitting") and not row["operation_name"] and any(
                    r["outcome"] == "ambiguous" for r in submits):
                self._update_clip(c, key, status=ClipStatus.ambiguous, possible_duplicate=True, lease_owner=None,
                                  lease_until=0.0, error="submit outcome unknown (from its manifest): "
                                                         "`reelcrew retry` resubmits it when you decide")
                out.append(f"clip {index} of {pid}: submit outcome unknown, parked as ambiguous (not resubmitted)")
        return out

    def record_artifacts(self, pid: str, stored: dict[str, Any]) -> None:
        """A render's files in the artifact store (name → `artifacts.Stored`), replacing an earlier cut's."""
        now = time.time()
        with self._write() as c:
            c.execute(production_artifacts.delete().where(production_artifacts.c.production_id == pid))
            for name, item in stored.items():
                c.execute(insert(production_artifacts).values(production_id=pid, name=name, ref=item.ref,
                                                              sha256=item.sha256, size=item.size, stored_at=now))

    def production_artifacts(self, pid: str) -> dict[str, dict]:
        """The production's stored files by name: ref, sha256, size."""
        with self._read() as c:
            rows = c.execute(select(production_artifacts).where(production_artifacts.c.production_id == pid)
                             ).mappings().all()
        return {r["name"]: {"ref": r["ref"], "sha256": r["sha256"], "size": r["size"]} for r in rows}

    def mark_pruned(self, key: str, note: str) -> None:
        """The clip's file was removed on purpose (`reelcrew prune`): forget the path, keep the clip done (and its
        artifact reference when the bytes are in a store, not in that file)."""
        with self._write() as c:
            row = c.execute(select(clips.c.path, clips.c.artifact).where(clips.c.key == key)).one()
            stored = {} if row.artifact != row.path else {"artifact": None}
            self._update_clip(c, key, path=None, error=note, **stored)


def open_ledger(settings) -> Store:
    """The ledger these settings name, with its receipts journal."""
    return Store(settings.db_url, journal=settings.journal_path)


def _copy_missing(src: Connection, dst: Connection, table: Table, match: tuple[str, ...],
                  skip: tuple[str, ...] = (), reset: dict[str, Any] | None = None) -> int:
    """Insert the source rows whose `match` columns have no equal row here (with the `reset` values)."""
    count = 0
    for row in src.execute(select(table)).mappings():
        if dst.execute(select(func.count()).select_from(table).where(
                *[table.c[col] == row[col] if row[col] is not None else table.c[col].is_(None) for col in match]
        )).scalar_one():
            continue
        dst.execute(insert(table).values(**{k: v for k, v in row.items() if k not in skip} | (reset or {})))
        count += 1
    return count


def utc_day(moment: float | None = None) -> str:
    """The day a charge belongs to (daily budgets are per UTC day)."""
    return datetime.fromtimestamp(time.time() if moment is None else moment, UTC).strftime("%Y-%m-%d")


def _clip_identity(clip: VideoClip) -> dict:
    """What a journal line needs to recreate the clip row if the ledger is lost."""
    return {"production_id": clip.production_id, "index": clip.index, "model": clip.model,
            "prompt": clip.prompt.model_dump_json()}


def _production_from_row(r) -> Production:
    return Production.model_validate({k: r[k] for k in Production.model_fields})


def _clip_from_row(r) -> VideoClip:
    return VideoClip(key=r["key"], production_id=r["production_id"], index=r["idx"], model=r["model"],
                     prompt=VideoPrompt.model_validate_json(r["prompt"]), status=ClipStatus(r["status"]),
                     operation_name=r["operation_name"], video_uri=r["video_uri"], path=r["path"], sha256=r["sha256"],
                     duration=r["duration"], retries=r["retries"] or 0, error=r["error"], cost_usd=r["cost_usd"] or 0.0,
                     possible_duplicate=bool(r["possible_duplicate"]), lease_owner=r["lease_owner"],
                     lease_until=r["lease_until"] or 0.0, submitted_at=r["submitted_at"],
                     artifact=r.get("artifact"), qc=json.loads(r["qc"]) if r.get("qc") else None)
