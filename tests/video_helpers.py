"""Builds the real generation stack (SDK → fake server) the way the pipeline does."""

from __future__ import annotations

from pathlib import Path

from reelcrew.models import VideoPrompt
from reelcrew.settings import load_settings
from reelcrew.store import Store, open_ledger
from reelcrew.video.backends import make_backend
from reelcrew.video.generator import ClipGenerator, ClipJob
from reelcrew.video.quota import RateGate


def prompts(n: int, prefix: str = "a red fox runs through snow", duration: int = 8, aspect: str = "16:9"):
    return [VideoPrompt(index=i, scene_index=i, prompt=f"{prefix}, shot {i}", duration=duration, aspect_ratio=aspect)
            for i in range(1, n + 1)]


def ledger():
    """The ledger the current environment names (the test's own state folder, or its PostgreSQL database)."""
    return open_ledger(load_settings())


def stack(out: Path, **overrides):
    settings = load_settings(reelcrew_output_dir=out, **overrides)
    store = open_ledger(settings)
    gate = RateGate(store, settings.veo3_rpm, settings.veo3_rpd, settings.veo3_rate_window_seconds)
    return settings, store, ClipGenerator(settings, store, make_backend(settings), gate)


def jobs(store: Store, settings, items, out: Path, pid: str = "p1"):
    result = []
    for p in items:
        clip = store.ensure_clip(pid, p, settings.veo3_model)
        result.append(ClipJob(clip.key, out / pid / "clips" / f"clip-{p.index:02d}.mp4"))
    return result
