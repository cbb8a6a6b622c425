"""Backup benchmark: a ledger of N productions (default 1,000), each with its stage outputs (script, SEO,
prompts from the mock writers), S clips with a receipt, a cost row and their events, as the pipeline records
them; then `reelcrew backup` (the service call) is timed and its size measured, and the backup is restored.

Usage: python bench/bench_backup.py [--productions 1000] [--scenes 6] [--db URL] [--repeat 3]
(`--db postgresql+psycopg://...` benchmarks pg_dump instead of SQLite's backup API.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]


def fill(store, productions: int, scenes: int) -> None:
    """The rows a mock batch of `productions` would leave, written through the ledger's own methods."""
    from reelcrew import mock_writer
    from reelcrew.models import Production

    for n in range(productions):
        topic = f"how thing number {n} is made, from raw material to the shop shelf"
        pid = f"bench-{n:05d}"
        store.upsert_production(Production(id=pid, topic=topic, language="en", scenes=scenes, aspect_ratio="16:9",
                                           style="cinematic", folder=f"/srv/reelcrew/output/{pid}"))
        script = mock_writer.write_script(topic, "en", scenes, 8, "cinematic")
        seo = mock_writer.write_seo(script, topic)
        prompts = mock_writer.write_prompts(script, "cinematic", "16:9", "720p")
        for stage, value in (("script", script), ("seo", seo), ("prompts", prompts)):
            store.save_stage(pid, stage, value.model_dump_json(), 1)
        for prompt in prompts.prompts:
            prompt.prompt += f" (production {n})"  # every clip its own key, as different topics give
            clip = store.ensure_clip(pid, prompt, "veo-3.1-fast-generate-001")
            operation = f"models/veo-3.1-fast-generate-001/operations/{n}x{prompt.index}"
            store.record_submit(clip.key, "bench:1:x", operation, 1, False, 60)
            store.finish_clip(clip.key, Path(f"/srv/reelcrew/output/{pid}/clips/clip-{prompt.index:02d}.mp4"),
                              "0" * 64, 8.0, 0.8)
            store.log("done", f"clip-{prompt.index:02d}.mp4 8.00s", pid, prompt.index, "clips")
        store.save_stage(pid, "final", {"file": f"/srv/reelcrew/output/{pid}/final.mp4", "duration": 8.0 * scenes})


@contextmanager
def unsynced(store):
    """Filling only: no fsync (journal and SQLite), or 1,000 productions take ten minutes of disk flushes."""
    from sqlalchemy import event

    real_fsync = os.fsync
    os.fsync = lambda fd: None
    if store.dialect == "sqlite":
        event.listen(store.engine, "connect", lambda conn, record: conn.execute("PRAGMA synchronous=OFF"))
        store.engine.dispose()
    try:
        yield
    finally:
        os.fsync = real_fsync
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--productions", type=int, default=1000)
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--db", default=None, help="a PostgreSQL URL (default: a SQLite ledger in a temp folder)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reelcrew-bench-backup-"))
    os.environ["REELCREW_STATE_DIR"] = str(work / "state")
    if args.db:
        os.environ["REELCREW_DB"] = args.db
    from reelcrew.service.backup import backup, restore
    from reelcrew.settings import load_settings
    from reelcrew.store import open_ledger

    settings = load_settings(reelcrew_output_dir=work / "out")
    store = open_ledger(settings)
    started = time.monotonic()
    with unsynced(store):
        fill(store, args.productions, args.scenes)
    print(f"ledger filled in {time.monotonic() - started:.1f} s: {store.counts()}")
    store = open_ledger(settings)  # the backup runs on the ledger's normal settings (synchronous=FULL)
    ledger_file = settings.db_url.removeprefix("sqlite:///") if settings.db_url.startswith("sqlite") else None
    if ledger_file:
        print(f"ledger file {Path(ledger_file).stat().st_size / 2**20:.1f} MiB (journal "
              f"{settings.journal_path.stat().st_size / 2**20:.1f} MiB)")
    times, result = [], None
    for _ in range(args.repeat):
        result = backup(settings, store)
        times.append(result.seconds)
    assert result is not None
    print(f"backup: median {statistics.median(times):.2f} s of {[round(t, 2) for t in times]}, "
          f"{result.bytes / 2**20:.2f} MiB ({result.path.name})")
    store.close()
    started = time.monotonic()
    report = restore(settings, result.path)
    print(f"restore (safety copy, replace, journal and manifest replay): {time.monotonic() - started:.2f} s; "
          f"{report.counts}")


if __name__ == "__main__":
    main()
