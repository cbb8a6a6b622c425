"""Scale-out commands: `reelcrew worker` and `reelcrew beat` (Celery's worker and beat, in this process, on the
broker of REELCREW_BROKER), and `reelcrew dead list|retry` (tasks that exhausted their retries).

The worker and beat run in-process (`app.worker_main`, `app.start`) rather than through the `celery -A ...`
script: the same settings loading, the same error messages and exit codes as every other command, and nothing
to know about module paths; Celery's own flags stay reachable after `--`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer

from reelcrew.cli.app import ConfigOpt, JsonOpt, app, err, open_store, reports_errors, settings_for

dead_app = typer.Typer(help="Tasks that exhausted their retries (with a broker): list them, re-queue one.",
                       no_args_is_help=True)
app.add_typer(dead_app, name="dead")


def _app(config):
    from reelcrew.workers import app_for, check_broker

    settings = settings_for(None, config)
    celery_app = app_for(settings)
    check_broker(celery_app)
    open_store(settings).close()  # migrate the ledger once, before the pool starts
    return settings, celery_app


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@reports_errors
def worker(
    ctx: typer.Context,
    queues: str | None = typer.Option(None, "--queues", "-Q",
                                      help="Comma-separated: writers, clips, render, maintenance (default: all)."),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", min=1,
                                           help="One pool of N tasks at once for all the queues (default: a pool "
                                                "per queue, see --pools)."),
    pools: str | None = typer.Option(None, "--pools", help="Threads per queue, each queue in its own process: "
                                     "e.g. writers=2,clips=8,render=1,maintenance=1 (defaults: the local runner's)."),
    pool: str | None = typer.Option(None, "--pool", help="prefork, threads or solo (default: threads for a pool "
                                    "per queue, Celery's prefork with --concurrency)."),
    config: ConfigOpt = None,
) -> None:
    """Run Celery workers on REELCREW_BROKER (tasks for the productions in the shared ledger): one process per queue
    with its own pool (a render never holds up the clips), or one shared pool with --concurrency."""
    from reelcrew.worker_pools import child_argv, parse_pools, pool_plan, run_pools
    from reelcrew.workers import worker_argv

    sizes = parse_pools(pools)  # a typo is said before anything connects
    settings, celery_app = _app(config)
    wanted = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    if concurrency is None:
        plan = pool_plan(settings, wanted, sizes)
        raise typer.Exit(run_pools(plan, lambda queue, threads: child_argv(
            queue, threads, pool or "threads", str(config) if config else None, list(ctx.args))))
    argv = worker_argv(wanted, concurrency)
    celery_app.worker_main([*argv, "--pool", pool or "prefork", *ctx.args])


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@reports_errors
def beat(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Run Celery beat on REELCREW_BROKER: the reconciler every 30 s (re-enqueues work whose lease expired)."""
    settings, celery_app = _app(config)
    schedule = settings.state_dir / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    celery_app.start(["beat", "--schedule", str(schedule), "--loglevel", "INFO", *ctx.args])


@dead_app.command("list")
@reports_errors
def dead_list(
    all_: bool = typer.Option(False, "--all", help="Also the letters already retried."),
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """The dead letters, newest first: task, production, clip, attempts, error."""
    from reelcrew.service import queue

    settings = settings_for(None, config)
    letters = queue.dead_letters(open_store(settings), all_)
    if as_json:
        print(json.dumps({"dead_letters": letters}, ensure_ascii=False, indent=2, default=str))
        return
    if not letters:
        err.print("no dead letters")
        return
    for d in letters:
        at = datetime.fromtimestamp(d["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        retried = " (retried)" if d["retried_at"] else ""
        print(f"{d['id']}\t{at}\t{d['task']}\t{d['production_id'] or '-'}\t{d['attempts']} attempt(s)\t"
              f"{(d['error'] or '')[:160]}{retried}")


@dead_app.command("retry")
@reports_errors
def dead_retry(
    letter_id: int = typer.Argument(..., help="A dead letter's id (`reelcrew dead list`)."),
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Re-queue a dead letter's task (once)."""
    from reelcrew.service import queue

    settings = settings_for(None, config)
    letter = queue.retry_dead(settings, open_store(settings), letter_id)
    if as_json:
        print(json.dumps({"retried": letter_id, "task": letter["task"], "production_id": letter["production_id"]}))
    else:
        err.print(f"re-queued {letter['task']} for {letter['production_id'] or '-'} (dead letter {letter_id})")
