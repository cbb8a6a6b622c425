"""The ledger: productions, stage outputs, clips, operation receipts, costs, quota state, events.

SQLite by default (WAL, busy timeout, synchronous=FULL, every transaction BEGIN IMMEDIATE so
read-then-write is atomic across processes), written through SQLAlchemy Core so a PostgreSQL
URL works unchanged later. The schema is versioned; `migrate()` brings an older ledger up to date.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (Boolean, Column, Float, Integer, MetaData, String, Table, Text, create_engine, event,
                        func, insert, select, update)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError, OperationalError

from reelcrew.errors import ConfigError
from reelcrew.files import HOST
from reelcrew.models import ClipStatus, Production, ProductionStatus, VideoClip, VideoPrompt

SCHEMA_VERSION = 3
meta = MetaData()

schema_info = Table("schema_info", meta, Column("key", String, primary_key=True), Column("value", String))
productions = Table(
    "productions", meta,
    Column("id", String, primary_key=True), Column("topic", Text, nullable=False), Column("language", String),
    Column("scenes", Integer), Column("aspect_ratio", String), Column("style", Text),
    Column("status", String, nullable=False, default="pending"), Column("failed_stage", String), Column("error", Text),
    Column("created_at", Float), Column("updated_at", Float), Column("owner", String))
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
    Column("submitted_at", Float), Column("updated_at", Float))
production_clips = Table(
    "production_clips", meta,
    Column("production_id", String, primary_key=True), Column("idx", Integer, primary_key=True),
    Column("clip_key", String, nullable=False))
receipts = Table(
    "receipts", meta,
    Column("id", Integer, primary_key=True, autoincrement=True), Column("clip_key", String, nullable=False),
    Column("operation_name", String), Column("outcome", String, nullable=False),  # accepted | ambiguous
    Column("attempt", Integer), Column("possible_duplicate", Boolean, default=False), Column("at", Float))
costs = Table(
    "costs", meta,
    Column("id", Integer, primary_key=True, autoincrement=True), Column("clip_key", String, nullable=False, unique=True),
    Column("production_id", String), Column("model", String), Column("resolution", String),
    Column("seconds", Float), Column("usd", Float), Column("operation_name", String),
    Column("day", String), Column("at", Float))
quota_state = Table(
    "quota_state", meta,
    Column("name", String, primary_key=True), Column("consecutive_failures", Integer, default=0),
    Column("open_until", Float, default=0.0), Column("reason", Text), Column("probe_owner", String),
    Column("probe_until", Float, default=0.0), Column("updated_at", Float))
events = Table(
    "events", meta,
    Column("id", Integer, primary_key=True, autoincrement=True), Column("at", Float),
    Column("production_id", String), Column("clip_index", Integer), Column("stage", String),
    Column("kind", String), Column("message", Text), Column("attempt", Integer))

# Each entry upgrades the ledger by one version; append, never edit.
MIGRATIONS: dict[int, list[str]] = {
    2: ["ALTER TABLE events ADD COLUMN attempt INTEGER"],
    3: ["ALTER TABLE productions ADD COLUMN owner VARCHAR"],
}

ME = f"{HOST}:{os.getpid()}"
_events_log = logging.getLogger("reelcrew.events")


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # receipts and costs are money
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Store:
    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///"):])
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create the ledger folder {path.parent}: {exc.strerror}",
                                  "choose a writable --output-dir or set REELCREW_DB") from exc
        self.engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            _sqlite_pragmas(self.engine)
        try:
            self.migrate()
        except DatabaseError as exc:
            raise ConfigError(f"the ledger {url.removeprefix('sqlite:///')} is unreadable or corrupt ({exc.orig})",
                              "move that file aside and run again: finished clips and stage files in the output "
                              "folder are kept and reused, or restore it from a backup") from exc

    # -- plumbing ---------------------------------------------------------------
    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """One transaction. Getting the write lock (BEGIN IMMEDIATE) is retried while another process holds
        it past busy_timeout; the body is not (a context manager cannot run it twice): its errors propagate."""
        with ExitStack() as stack:
            for attempt in range(20):
                try:
                    conn = stack.enter_context(self.engine.begin())
                    break
                except OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 19:
                        raise
                    time.sleep(0.05 * (attempt + 1))
            yield conn

    def migrate(self) -> None:
        with self.tx() as c:
            meta.create_all(c)
            row = c.execute(select(schema_info.c.value).where(schema_info.c.key == "version")).first()
            version = int(row[0]) if row else 0
            if version == 0:
                c.execute(insert(schema_info).values(key="version", value=str(SCHEMA_VERSION)))
                version = SCHEMA_VERSION
            for target in sorted(v for v in MIGRATIONS if v > version):
                for statement in MIGRATIONS[target]:
                    c.exec_driver_sql(statement)
                c.execute(update(schema_info).where(schema_info.c.key == "version").values(value=str(target)))

    def log(self, kind: str, message: str, production_id: str | None = None, clip_index: int | None = None,
            stage: str | None = None, attempt: int | None = None) -> None:
        """An event in the ledger and a structured line in the log file."""
        with self.tx() as c:
            c.execute(insert(events).values(at=time.time(), production_id=production_id, clip_index=clip_index,
                                            stage=stage, kind=kind, message=message, attempt=attempt))
        _events_log.info(message, extra={"kind": kind, "production_id": production_id, "clip_index": clip_index,
                                         "stage": stage, "attempt": attempt})

    # -- productions and stages -------------------------------------------------------
    def upsert_production(self, p: Production) -> None:
        now = time.time()
        with self.tx() as c:
            if c.execute(select(productions.c.id).where(productions.c.id == p.id)).first():
                return
            c.execute(insert(productions).values(**p.model_dump(mode="json"), created_at=now, updated_at=now))

    def set_production_status(self, pid: str, status: ProductionStatus, failed_stage: str | None = None,
                              error: str | None = None) -> None:
        with self.tx() as c:
            c.execute(update(productions).where(productions.c.id == pid).values(
                status=status.value, failed_stage=failed_stage, error=error, updated_at=time.time(),
                owner=ME if status == ProductionStatus.running else None))

    def production_owner(self, pid: str) -> str | None:
        """The process running this production, if it says it is running."""
        with self.tx() as c:
            return c.execute(select(productions.c.owner).where(productions.c.id == pid)).scalar()

    def production(self, pid: str) -> Production | None:
        with self.tx() as c:
            row = c.execute(select(productions).where(productions.c.id == pid)).mappings().first()
        return Production.model_validate({k: row[k] for k in Production.model_fields}) if row else None

    def all_productions(self) -> list[Production]:
        with self.tx() as c:
            rows = c.execute(select(productions).order_by(productions.c.created_at)).mappings().all()
        return [Production.model_validate({k: r[k] for k in Production.model_fields}) for r in rows]

    def save_stage(self, pid: str, stage: str, data: Any, llm_answers: int = 0) -> None:
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        with self.tx() as c:
            c.execute(stage_outputs.delete().where((stage_outputs.c.production_id == pid) & (stage_outputs.c.stage == stage)))
            c.execute(insert(stage_outputs).values(production_id=pid, stage=stage, data=text, llm_answers=llm_answers,
                                                   created_at=time.time()))

    def delete_stage(self, pid: str, stage: str) -> None:
        with self.tx() as c:
            c.execute(stage_outputs.delete().where((stage_outputs.c.production_id == pid) & (stage_outputs.c.stage == stage)))

    def stage(self, pid: str, stage: str) -> str | None:
        with self.tx() as c:
            row = c.execute(select(stage_outputs.c.data).where(
                (stage_outputs.c.production_id == pid) & (stage_outputs.c.stage == stage))).first()
        return row[0] if row else None

    def llm_answers(self, pid: str) -> int:
        with self.tx() as c:
            return int(c.execute(select(func.coalesce(func.sum(stage_outputs.c.llm_answers), 0)).where(
                stage_outputs.c.production_id == pid)).scalar_one())

    # -- clips -------------------------------------------------------------------------
    def ensure_clip(self, pid: str, prompt: VideoPrompt, model: str) -> VideoClip:
        """The clip row for this prompt: existing (any production) or new and pending."""
        key = prompt.clip_key(model)
        now = time.time()
        with self.tx() as c:
            if not c.execute(select(clips.c.key).where(clips.c.key == key)).first():
                c.execute(insert(clips).values(key=key, production_id=pid, idx=prompt.index, model=model,
                                               prompt=prompt.model_dump_json(), status=ClipStatus.pending.value,
                                               retries=0, cost_usd=0.0, possible_duplicate=False, lease_until=0.0,
                                               updated_at=now))
            c.execute(production_clips.delete().where((production_clips.c.production_id == pid)
                                                      & (production_clips.c.idx == prompt.index)))
            c.execute(insert(production_clips).values(production_id=pid, idx=prompt.index, clip_key=key))
        return self.clip(key)

    def clip(self, key: str, conn: Connection | None = None) -> VideoClip:
        def read(c):
            return c.execute(select(clips).where(clips.c.key == key)).mappings().one()
        if conn is not None:
            return _clip_from_row(read(conn))
        with self.tx() as c:
            return _clip_from_row(read(c))

    def clip_row(self, key: str) -> dict:
        with self.tx() as c:
            return dict(c.execute(select(clips).where(clips.c.key == key)).mappings().one())

    def production_clips(self, pid: str) -> list[VideoClip]:
        with self.tx() as c:
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

    def all_clip_rows(self) -> list[dict]:
        with self.tx() as c:
            return [dict(r) for r in c.execute(select(clips)).mappings().all()]

    def update_clip(self, key: str, conn: Connection | None = None, **values: Any) -> None:
        values = {k: (v.value if isinstance(v, ClipStatus) else v) for k, v in values.items()}
        values["updated_at"] = time.time()
        stmt = update(clips).where(clips.c.key == key).values(**values)
        if conn is not None:
            conn.execute(stmt)
        else:
            with self.tx() as c:
                c.execute(stmt)

    def add_receipt(self, conn: Connection, key: str, operation_name: str | None, outcome: str, attempt: int,
                    possible_duplicate: bool = False) -> None:
        conn.execute(insert(receipts).values(clip_key=key, operation_name=operation_name, outcome=outcome,
                                             attempt=attempt, possible_duplicate=possible_duplicate, at=time.time()))

    def receipts(self, key: str | None = None) -> list[dict]:
        stmt = select(receipts).order_by(receipts.c.id)
        if key:
            stmt = stmt.where(receipts.c.clip_key == key)
        with self.tx() as c:
            return [dict(r) for r in c.execute(stmt).mappings().all()]

    # -- money ---------------------------------------------------------------------------
    def record_cost(self, conn: Connection, clip: VideoClip, seconds: float, usd: float) -> None:
        if conn.execute(select(costs.c.id).where(costs.c.clip_key == clip.key)).first():
            return  # one charge per clip, however often it is downloaded again
        now = time.time()
        conn.execute(insert(costs).values(clip_key=clip.key, production_id=clip.production_id, model=clip.model,
                                          resolution=clip.prompt.resolution, seconds=seconds, usd=usd,
                                          operation_name=clip.operation_name, at=now,
                                          day=utc_day(now)))

    def spent_usd(self, conn: Connection, since: float | None = None, day: str | None = None) -> float:
        """Money charged so far (clips that finished), optionally since a moment or on one UTC day."""
        charged = select(func.coalesce(func.sum(costs.c.usd), 0.0))
        if since is not None:
            charged = charged.where(costs.c.at >= since)
        if day is not None:
            charged = charged.where(costs.c.day == day)
        return float(conn.execute(charged).scalar_one())

    def cost_rows(self) -> list[dict]:
        with self.tx() as c:
            return [dict(r) for r in c.execute(select(costs).order_by(costs.c.at)).mappings().all()]

    # -- quota state -------------------------------------------------------------------------
    def quota(self, conn: Connection, name: str = "veo") -> dict:
        row = conn.execute(select(quota_state).where(quota_state.c.name == name)).mappings().first()
        if row is None:
            conn.execute(insert(quota_state).values(name=name, consecutive_failures=0, open_until=0.0,
                                                    probe_until=0.0, updated_at=time.time()))
            row = conn.execute(select(quota_state).where(quota_state.c.name == name)).mappings().one()
        return dict(row)

    def set_quota(self, conn: Connection, name: str = "veo", **values: Any) -> None:
        conn.execute(update(quota_state).where(quota_state.c.name == name).values(**values, updated_at=time.time()))

    def recent_events(self, pid: str | None = None, limit: int = 20) -> list[dict]:
        stmt = select(events).order_by(events.c.id.desc()).limit(limit)
        if pid:
            stmt = stmt.where(events.c.production_id == pid)
        with self.tx() as c:
            return [dict(r) for r in c.execute(stmt).mappings().all()][::-1]


def utc_day(moment: float | None = None) -> str:
    """The day a charge belongs to (daily budgets are per UTC day)."""
    return datetime.fromtimestamp(time.time() if moment is None else moment, timezone.utc).strftime("%Y-%m-%d")


def _clip_from_row(r) -> VideoClip:
    return VideoClip(key=r["key"], production_id=r["production_id"], index=r["idx"], model=r["model"],
                     prompt=VideoPrompt.model_validate_json(r["prompt"]), status=ClipStatus(r["status"]),
                     operation_name=r["operation_name"], video_uri=r["video_uri"], path=r["path"], sha256=r["sha256"],
                     duration=r["duration"], retries=r["retries"] or 0, error=r["error"], cost_usd=r["cost_usd"] or 0.0,
                     possible_duplicate=bool(r["possible_duplicate"]))
