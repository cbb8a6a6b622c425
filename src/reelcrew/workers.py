"""The Celery runner: the same task bodies as the local runner (`reelcrew.tasks`), run by `reelcrew worker`
processes on any number of machines that share the ledger (PostgreSQL), the broker (Redis) and the artifacts.

Why these settings (Celery's own guide on idempotent tasks and `acks_late`):
- state lives in the ledger, never in Redis: results are ignored and a message carries ids only;
- a message is acknowledged after its body ran (`acks_late`), and put back when the worker process dies
  (`reject_on_worker_lost`), so a killed worker's task runs again elsewhere; the bodies are idempotent by ids
  (a redelivered task continues, or does nothing when its work is done);
- one message reserved per worker process (`prefetch_multiplier=1`): a slow render never sits on clip tasks;
- Redis's visibility timeout is longer than the hard time limit of the longest task, so a task still running is
  never handed to a second worker; lost work is found sooner by the reconciler (Beat, every 30 s), which reads
  the ledger's leases rather than waiting for the broker;
- transient failures (Veo unavailable, a database hiccup, the broker blinking) are retried with exponential
  back-off and jitter; a task that exhausts its retries, or fails outright, lands in the ledger's dead letters
  (`reelcrew dead list`, `reelcrew dead retry ID`);
- two-phase generation: the submit task ends when its receipt is committed; the follow task looks once and,
  while Veo works, sends itself again with a countdown: no worker sleeps on an operation.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from celery import Celery, Task, signals
from kombu import Exchange, Queue

from reelcrew.errors import ConfigError

log = logging.getLogger("reelcrew.workers")

QUEUES = ("writers", "clips", "render", "maintenance")
BODIES = ("write", "submit_clip", "follow_clip", "render")  # reelcrew.tasks' bodies, one Celery task each
TASKS: dict[str, str] = {"reelcrew.write": "writers", "reelcrew.submit_clip": "clips",
                         "reelcrew.follow_clip": "clips", "reelcrew.render": "render",
                         "reelcrew.reconcile": "maintenance", "reelcrew.backup": "maintenance"}
SOFT_LIMIT = 30 * 60  # seconds: the longest body is a render of a long final; writers take minutes at most
HARD_LIMIT = SOFT_LIMIT + 120
VISIBILITY_TIMEOUT = HARD_LIMIT + 15 * 60  # longer than any task runs, so no running task is delivered twice


class WritersFailed(Exception):
    """A write step left its production failed: raised so Celery retries it with back-off, then dead-letters it."""


def make_app(broker: str, settings: Any = None) -> Celery:
    """A Celery app on `broker` (redis://...) with the queues and the reliability settings above."""
    if not broker.startswith(("redis://", "rediss://")):
        raise ConfigError(f"REELCREW_BROKER={masked(broker)} is not a Redis URL",
                          "set REELCREW_BROKER=redis://[:password@]host:6379/0 (or unset it to run locally)")
    every = float(getattr(settings, "reelcrew_reconcile_seconds", 30.0))
    app = Celery("reelcrew", broker=broker, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json", accept_content=["json"],
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True,
        task_soft_time_limit=SOFT_LIMIT,
        task_time_limit=HARD_LIMIT,
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_default_queue="maintenance",
        task_routes={name: {"queue": queue, "exchange": queue, "routing_key": queue} for name, queue in TASKS.items()},
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # Flower's live view
        beat_schedule={"reconcile": {"task": "reelcrew.reconcile", "schedule": every,
                                     "options": {"expires": every}}},
    )
    _register(app, int(getattr(settings, "reelcrew_task_retries", 5)))
    return app


def masked(url: str) -> str:
    """The broker URL with its password hidden (for messages and logs)."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


# -- one task context per worker process --------------------------------------------------------------------
class _Process:
    """This worker process's settings, ledger and task context (`reelcrew.tasks.Tasks`), made on first use,
    after the fork; its owner id (host:pid:random) is what the ledger's claims and the chains' runner name."""

    lock = threading.Lock()
    tasks: Any = None

    @classmethod
    def get(cls) -> Any:
        with cls.lock:
            if cls.tasks is None:
                from reelcrew.service.ledger import open_store
                from reelcrew.settings import load_settings
                settings = load_settings(None)
                from reelcrew import alerts

                alerts.install(settings)  # a worker's failures and dead letters alert like the CLI's
                store = open_store(settings)
                cls.tasks = worker_tasks()(settings, store, progress=ledger_progress(store))
            return cls.tasks


@signals.worker_process_init.connect
def _fresh_after_fork(**_: Any) -> None:
    _Process.tasks = None  # a connection pool (and a claim owner) must never cross a fork


# what a queue's first step would otherwise load while its production waits (CrewAI alone is 3-10 s; the installed
# fonts' coverage, read by the texts' pre-flight and the captions, 1-5 s): modules, or `module:function` to call
WARM_UP: dict[str, tuple[str, ...]] = {
    "writers": ("reelcrew.crews.base", "reelcrew.pipeline", "reelcrew.preflight",
                "reelcrew.assemble.fonts:_installed_coverage"),
    "clips": ("google.genai", "reelcrew.video.backends", "reelcrew.video.generator", "reelcrew.pipeline"),
    "render": ("moviepy", "reelcrew.assembly", "reelcrew.pipeline", "reelcrew.assemble.fonts:_installed_coverage"),
}


@signals.worker_init.connect
def _warm_up(sender: Any = None, **_: Any) -> None:
    """Before the worker takes its first task (and answers a ping): import what its queues' steps need, and make
    the process's ledger context where no fork follows (threads, solo). A production's first step then runs at
    once instead of loading CrewAI or the Google SDK while the batch's clock runs."""
    consumed = set(getattr(getattr(sender, "app", None) and sender.app.amqp.queues, "consume_from", None) or ())
    warm_up(sorted(consumed or QUEUES))
    if "prefork" not in str(getattr(sender, "pool_cls", "prefork")):
        try:
            _Process.get()
        except Exception:  # the ledger unreachable now: the first task tries again (and retries with back-off)
            log.warning("the worker's ledger context could not be made before its first task", exc_info=True)


def warm_up(queues: Iterable[str]) -> None:
    """Load what these queues' steps need (WARM_UP) in this process, once."""
    import importlib

    for name in dict.fromkeys(m for queue in queues for m in WARM_UP.get(queue, ())):
        module, _, function = name.partition(":")
        try:
            loaded = importlib.import_module(module)
            if function:
                getattr(loaded, function)()
        except Exception:  # a warm-up is an optimisation: the step itself says what is wrong, with the fix
            log.warning("warm-up of %s failed", name, exc_info=True)


def transient_errors() -> tuple[type[BaseException], ...]:
    """What is worth retrying with back-off: Veo unavailable, a database or broker hiccup, the writers failing."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import DBAPIError

    from reelcrew.video.errors import Unavailable

    return (Unavailable, DBAPIError, RedisConnectionError, ConnectionError, TimeoutError, WritersFailed)


class LedgerTask(Task):
    """A task whose final failure is written to the ledger's dead letters, with what re-queues it."""

    acks_late = True
    reject_on_worker_lost = True
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:  # Celery's hook: retries are exhausted
        attempts = (self.request.retries or 0) + 1
        step = kwargs.get("step") or {}
        pid, clip_key = step.get("production_id"), step.get("clip_key")
        try:
            tasks = _Process.get()
            tasks.store.add_dead_letter(self.name, dict(kwargs), f"{type(exc).__name__}: {exc}", attempts,
                                        production_id=pid, clip_key=clip_key)
            if step:  # its chain ends here: the reconciler must not send it again (`reelcrew dead retry` does)
                tasks.store.mark_chains([], ended=chain_of(step))
        except Exception:  # the ledger itself is down: the log line is all there is
            log.exception("could not record the dead letter of %s %s", self.name, task_id)
        log.error("task gave up", extra={"task": self.name, "task_id": task_id, "attempts": attempts,
                                         "production_id": pid, "clip_key": clip_key, "error": str(exc)[:500]})


def _register(app: Celery, retries: int) -> None:
    retry_on = transient_errors()

    def body_task(body: str) -> None:
        @app.task(name=f"reelcrew.{body}", base=LedgerTask, bind=True, autoretry_for=retry_on, max_retries=retries)
        def run(self, step: dict) -> None:
            run_step(app, step, self.request.id, self.request.retries)

    for body in BODIES:
        body_task(body)

    @app.task(name="reelcrew.reconcile", base=LedgerTask, bind=True, max_retries=0)
    def reconcile(self) -> int:
        return len(send_steps(app, lost_steps(_Process.get())))

    @app.task(name="reelcrew.backup", base=LedgerTask, bind=True, max_retries=0)
    def backup(self) -> None:
        from reelcrew.service.backup import backup as make_backup

        tasks = _Process.get()
        make_backup(tasks.base, tasks.store)


def run_step(app: Celery, fields: dict, task_id: str | None = None, delivery: int = 0) -> list[Any]:
    """One message: mark its chain running, run the body, send its follow-ups (their chains marked first)."""
    from reelcrew.tasks import Step

    shared = _Process.get()
    step = Step.model_validate(fields)
    context = {"task": step.task, "task_id": task_id, "production_id": step.production_id,
               "clip_key": step.clip_key, "clip_index": step.clip_index, "delivery": delivery}
    log.info("step start", extra=context)
    tasks = own_context(shared) if step.task in ("write", "render") else shared
    chain = chain_of(fields)
    try:
        shared.store.mark_chains([(chain, step.production_id, step_json(step),
                                   time.time() + running_limit(step, shared), tasks.owner)])
        follow_ups = tasks.run(step)
        if step.task == "write" and not follow_ups:
            failed_writers(shared.store, step.production_id, chain)
        send_steps(app, follow_ups, store=shared.store, ended=chain)
    finally:
        if tasks is not shared:
            tasks.close()
            shared.store.release_production(step.production_id, tasks.owner)
    log.info("step end", extra={**context, "follow_ups": [s.task for s in follow_ups]})
    return follow_ups


def own_context(shared: Any) -> Any:
    """A task context of its own for a write or a render step: the production is claimed by this step's owner and
    released when the step ends, so its next step may run on any worker (the process's shared context would hold
    it for as long as this worker lives)."""
    return worker_tasks()(shared.base, shared.store, progress=shared.progress)


def worker_tasks() -> type:
    """The task bodies as a worker runs them: the local runner's (`reelcrew.tasks.Tasks`). The turn for a Veo slot
    is the ledger's line (`Store._my_turn`), the same for every worker on every machine."""
    from reelcrew.tasks import Tasks

    return Tasks


def ledger_progress(store: Any) -> Any:
    """Progress as ledger events (what the dashboard's event stream and `reelcrew status` read: a worker has no
    terminal): a stage starting (`progress`, with the stage), a clip changing state (`clip_<status>`)."""
    from reelcrew.pipeline import Progress

    def stage(pid: str, name: str) -> None:
        if name in ("script", "seo", "prompts", "final"):
            store.log("progress", f"{name} started", pid, stage=name)

    def clip(changed: Any) -> None:
        if changed.status.value in ("done", "failed", "filtered", "ambiguous", "paused"):
            store.log(f"clip_{changed.status.value}", changed.error or changed.status.value, changed.production_id,
                      changed.index, "clips")

    return Progress(stage=stage, clip=clip)


def failed_writers(store: Any, pid: str, chain: str) -> None:
    """A write that left its production failed raises WritersFailed: Celery retries it, then dead-letters it."""
    from reelcrew.models import ProductionStatus

    prod = store.production(pid)
    if prod is not None and prod.status == ProductionStatus.failed:
        store.mark_chains([], ended=chain)
        raise WritersFailed(f"{prod.failed_stage or 'writers'}: {prod.error}")


def running_limit(step: Any, tasks: Any) -> float:
    """How long a step may run before the reconciler thinks its worker is gone (another host's; one on this
    host is known dead at once by its pid): a clip step is one submit, poll or download; writers and renders
    are bounded by the soft time limit."""
    if step.task in ("submit_clip", "follow_clip"):
        s = tasks.base
        return max(s.submit_timeout, s.download_timeout) + 60
    return SOFT_LIMIT


# -- sending steps -----------------------------------------------------------------------------------------
def chain_of(step: Any) -> str:
    """A production's own chain (writers, render) or one clip's (submit, follow) for that scene."""
    fields = step if isinstance(step, dict) else step.model_dump()
    if fields.get("task") in ("submit_clip", "follow_clip") and fields.get("clip_key"):
        return f"{fields['production_id']}:{fields.get('clip_index')}:{fields['clip_key']}"
    return f"{fields['production_id']}:-"


def step_json(step: Any) -> str:
    return step.model_dump_json(exclude={"countdown"})


def send_steps(app: Celery, steps: Iterable[Any], store: Any = None, ended: str | None = None) -> list[Any]:
    """Each step as a message on its queue (a countdown for a later look), ids only, never payloads. Its chain is
    marked in the ledger first, so a step lost between here and a worker is found by the reconciler."""
    steps = list(steps or ())
    if store is not None:
        now = time.time()
        store.mark_chains([(chain_of(s), s.production_id, step_json(s), now + s.countdown, None) for s in steps],
                          ended=ended)
    for step in steps:
        app.send_task(f"reelcrew.{step.task}", kwargs={"step": json.loads(step_json(step))}, queue=step.queue,
                      countdown=step.countdown or None)
    return steps


def lost_steps(tasks: Any) -> list[Any]:
    """Beat's reconcile pass: the steps of chains that are overdue by REELCREW_LOST_AFTER_SECONDS with no live
    runner (a killed worker's, a message lost with a Redis restart). Sending one again is safe: the bodies are
    idempotent by ids (a clip already at Veo is re-attached by its receipt, never paid twice)."""
    from reelcrew.files import owner_alive
    from reelcrew.tasks import Step

    grace, now, lost = tasks.base.reelcrew_lost_after_seconds, time.time(), []
    for row in tasks.store.task_chains():
        running = row["runner"] is not None
        if running and owner_alive(row["runner"]) and row["due_at"] > now:
            continue  # running now, by a live worker, within its time
        if not running and row["due_at"] + grace > now:
            continue  # waiting in the broker, not overdue yet
        step = Step.model_validate_json(row["step"]).model_copy(update={"countdown": 0.0})
        tasks.store.log("reconcile", f"{step.task} sent again: its message was lost (runner "
                        f"{row['runner'] or 'none'})", step.production_id, step.clip_index)
        lost.append(step)
    if lost:
        tasks.store.mark_chains([(chain_of(s), s.production_id, step_json(s), now, None) for s in lost])
    return lost


# -- the app of this process (what `celery -A reelcrew.workers` and the CLI use) ------------------------------
_apps: dict[str, Celery] = {}


def app_for(settings: Any) -> Celery:
    """The Celery app of `settings.reelcrew_broker` (one per URL in this process)."""
    broker = settings.reelcrew_broker
    if not broker:
        raise ConfigError("no broker is set", "set REELCREW_BROKER=redis://host:6379/0 to use Celery workers")
    if broker not in _apps:
        _apps[broker] = make_app(broker, settings)
    return _apps[broker]


def check_broker(app: Celery) -> None:
    """Fail early and clearly when the broker cannot be reached (exit 2, the URL with its password masked)."""
    url = app.conf.broker_url
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:
        raise ConfigError(f"cannot reach the broker {masked(url)}: {exc}",
                          "start Redis there (or fix REELCREW_BROKER), or unset REELCREW_BROKER to run locally"
                          ) from None


def worker_argv(queues: list[str] | None, concurrency: int | None, loglevel: str = "INFO") -> list[str]:
    """The arguments of `celery worker` for `reelcrew worker`."""
    wanted = queues or list(QUEUES)
    unknown = [q for q in wanted if q not in QUEUES]
    if unknown:
        raise ConfigError(f"unknown queue(s): {', '.join(unknown)}", f"choose among {', '.join(QUEUES)}")
    argv = ["worker", "--queues", ",".join(wanted), "--loglevel", loglevel, "--without-gossip", "--without-mingle",
            "--hostname", f"reelcrew-{os.getpid()}@%h"]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    return argv
