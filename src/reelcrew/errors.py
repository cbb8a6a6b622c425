"""Every error a user can see is one of these: it names the problem and the fix.

The CLI maps `exit_code` straight to the process exit status, so a bad input is
always 2 and a failed production is 1, whichever layer noticed it.
"""

from __future__ import annotations


class ReelcrewError(Exception):
    exit_code = 1

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}" + (f"\n  fix: {fix}" if fix else ""))


class ConfigError(ReelcrewError):
    """Bad settings, YAML, keys or paths: nothing was spent."""

    exit_code = 2


class InputError(ReelcrewError):
    """Bad user input (topic, file, option)."""

    exit_code = 2


class CrewOutputError(ReelcrewError):
    """An agent kept answering with something that does not fit the schema."""


class VideoError(ReelcrewError):
    """A clip could not be generated, downloaded or validated."""


class AssemblyError(ReelcrewError):
    """The final cut could not be rendered."""


class BudgetError(ReelcrewError):
    """A spend cap would be crossed: nothing more is submitted."""

    exit_code = 1
