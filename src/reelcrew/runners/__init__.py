"""Runners: what carries the task bodies (reelcrew.tasks) out. The embedded local runner is the default for the
CLI and `reelcrew serve`; a broker-backed one (Celery) runs the same bodies on several machines."""

from reelcrew.runners.base import QUEUE_NAMES, Runner
from reelcrew.runners.local import LocalRunner

__all__ = ["QUEUE_NAMES", "LocalRunner", "Runner"]
