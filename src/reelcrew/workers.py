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

import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from celery import Celery, Task, signals
from kombu import Queue

from reelcrew.errors import ConfigError

log = logging.getLogger("reelcrew.workers")

QUEUES = ("writers", "clips", "render", "maintenance")
# task name -> (queue, the body's name in reelcrew.tasks)
TASKS: dict[str, str] = {
    "reelcrew.write": "writers",
    "reelcrew.submit_clip": "clips",
    "reelcrew.follow_clip": "clips",
    "reelcrew.render": "render",
    "reelcrew.reconcile": "maintenance",
    "reelcrew.backup": "maintenance",
}
SOFT_LIMIT = 30 * 60  # seconds: the longest body is a render of a long final; writers take minutes at most
HARD_LIMIT = SOFT_LIMIT + 120
VISIBILITY_TIMEOUT = HARD_LIMIT + 15 * 60  # longer than any task runs, so no running task is delivered twice
RECONCILE_EVERY = 30.0  # seconds between Beat's reconcile passes
MAX_RETRIES = 5


def masked(url: str) -> str:
    """The broker URL with its password hidden (for messages and logs)."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


def make_app(broker: str) -> Celery:
    """A Celery app on `broker` (redis://...) with the queues and the reliability settings above."""
    if not broker.startswith(("redis://", "rediss://")):
        raise ConfigError(f"REELCREW_BROKER={masked(broker)} is not a Redis URL",
                          "set REELCREW_BROKER=redis://[:password@]host:6379/0 (or unset it to run locally)")
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
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="maintenance",
        task_routes={name: {"queue": queue} for name, queue in TASKS.items()},
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # Flower's live view
        beat_schedule={"reconcile": {"task": "reelcrew.reconcile", "schedule": RECONCILE_EVERY,
                                     "options": {"expires": RECONCILE_EVERY}}},
    )
    _register(app)
    return app


# -- one ledger per worker process --------------------------------------------------------------------------
class _Process:
    """The settings and ledger of this worker process, opened on first use (after the fork)."""

    lock = threading.Lock()
    settings: Any = None
    store: Any = None

    @classmethod
    def get(cls) -> tuple[Any, Any]:
        with cls.lock:
            if cls.store is None:
                from reelcrew.service.ledger import open_store
                from reelcrew.settings import load_settings

                cls.settings = load_settings(None)
                cls.store = open_store(cls.settings)
            return cls.settings, cls.store


@signals.worker_process_init.connect
def _fresh_after_fork(**_: Any) -> None:
    _Process.settings = _Process.store = None  # a connection pool must never cross a fork


def transient_errors() -> tuple[type[BaseException], ...]:
    """What is worth retrying with back-off: Veo unavailable, a database or broker hiccup."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import DBAPIError

    from reelcrew.video.errors import Unavailable

    return (Unavailable, DBAPIError, RedisConnectionError, ConnectionError, TimeoutError)


class LedgerTask(Task):
    """A task whose final failure is written to the ledger's dead letters, with what re-queues it."""

    acks_late = True
    reject_on_worker_lost = True
    max_retries = MAX_RETRIES
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:  # noqa: D401 - Celery's hook
        attempts = (self.request.retries or 0) + 1
        try:
            _, store = _Process.get()
            store.add_dead_letter(self.name, dict(kwargs), f"{type(exc).__name__}: {exc}", attempts,
                                  production_id=kwargs.get("production_id"), clip_key=kwargs.get("clip_key"))
        except Exception:  # the ledger itself is down: the log line is all there is
            log.exception("could not record the dead letter of %s %s", self.name, task_id)
        log.error("task gave up", extra={"task": self.name, "task_id": task_id, "attempts": attempts,
                                         "production_id": kwargs.get("production_id"),
                                         "clip_key": kwargs.get("clip_key"), "error": str(exc)[:500]})


def _register(app: Celery) -> None:
    retry_on = transient_errors()

    def body_task(name: str):
        body_name = name.removeprefix("reelcrew.")

        @app.task(name=name, base=LedgerTask, bind=True, autoretry_for=retry_on)
        def run(self, **ids: Any) -> None:
            settings, store = _Process.get()
            log.info("task start", extra={"task": name, "task_id": self.request.id, **ids,
                                          "delivery": self.request.retries})
            from reelcrew import tasks

            steps = getattr(tasks, body_name)(settings, store, **ids)
            send_steps(app, steps)

        return run

    for task_name in ("reelcrew.write", "reelcrew.submit_clip", "reelcrew.follow_clip", "reelcrew.render"):
        body_task(task_name)

    @app.task(name="reelcrew.reconcile", base=LedgerTask, bind=True, autoretry_for=retry_on, max_retries=1)
    def reconcile(self) -> int:
        settings, store = _Process.get()
        return len(send_steps(app, lost_work(settings, store)))

    @app.task(name="reelcrew.backup", base=LedgerTask, bind=True, max_retries=0)
    def backup(self) -> None:
        from reelcrew.service.backup import backup as make_backup

        settings, store = _Process.get()
        make_backup(settings, store)


# -- sending steps -----------------------------------------------------------------------------------------
def step_message(step: Any) -> tuple[str, dict[str, Any], float]:
    """(task name, ids, countdown) of one of the bodies' follow-up steps."""
    name = step.task if step.task.startswith("reelcrew.") else f"reelcrew.{step.task}"
    return name, dict(step.ids), float(step.delay or 0.0)


def send_steps(app: Celery, steps: Iterable[Any]) -> list[Any]:
    """Each step as a message on its queue (a countdown for a later look); ids only, never payloads."""
    sent = []
    for step in steps or ():
        name, ids, countdown = step_message(step)
        app.send_task(name, kwargs=ids, queue=TASKS[name], countdown=countdown or None)
        sent.append(step)
    return sent


def lost_work(settings: Any, store: Any) -> list[Any]:
    """What the reconciler re-enqueues: the next step of work whose lease expired (see reelcrew.tasks)."""
    from reelcrew import tasks

    return list(tasks.lost_steps(settings, store))


# -- the app of this process (what `celery -A reelcrew.workers` and the CLI use) ------------------------------
_apps: dict[str, Celery] = {}


def app_for(settings: Any) -> Celery:
    """The Celery app of `settings.reelcrew_broker` (one per URL in this process)."""
    broker = settings.reelcrew_broker
    if not broker:
        raise ConfigError("no broker is set", "set REELCREW_BROKER=redis://host:6379/0 to use Celery workers")
    if broker not in _apps:
        _apps[broker] = make_app(broker)
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
