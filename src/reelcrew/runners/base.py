"""The runner seam: a runner takes steps (reelcrew.tasks.Step), runs each body when its countdown is up, on the
step's queue, and enqueues the follow-ups the body returns. Whatever a runner does, the state is in the ledger."""

from __future__ import annotations

from typing import Protocol

from reelcrew.tasks import Step

# writers (the LLM stages), clips (submit and follow: short steps), render (ffmpeg), maintenance (upkeep, Beat)
QUEUE_NAMES = ("writers", "clips", "render", "maintenance")


class Runner(Protocol):
    def enqueue(self, step: Step) -> None:
        """Run the step after its countdown; its follow-ups are enqueued in turn."""

    def wait(self, timeout: float | None = None) -> None:
        """Block until no step is left (the batch is over), re-raising an error that stopped the batch."""

    def stop(self) -> None:
        """No new step starts; steps running finish their current piece (never mid-receipt)."""
