"""reelcrew: topics in, finished short videos out."""

from reelcrew import _quiet  # noqa: F401  (must run before crewai is imported anywhere)

__version__ = "0.1.0"
