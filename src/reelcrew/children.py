"""Child processes (ffmpeg) that die with their parent, even when the parent is killed with SIGKILL.

On Linux the kernel can send a child a signal when its parent dies (`prctl(PR_SET_PDEATHSIG)`). We set it with
util-linux's `setpriv --pdeathsig KILL`, which execs the real command in the same process: no Python runs between
fork and exec (a `preexec_fn` is unsafe with the clip threads), and the setting survives the exec. Where `setpriv`
is missing (not Linux), commands run unwrapped and a killed parent's ffmpeg finishes on its own.

The signal follows the *thread* that started the child: every caller here waits for its child in that thread.
"""

from __future__ import annotations

import shutil
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def _setpriv() -> str | None:
    return shutil.which("setpriv") if sys.platform.startswith("linux") else None


def dies_with_parent(command: list[str]) -> list[str]:
    """`command`, prefixed so the kernel kills it with SIGKILL if this process dies first."""
    setpriv = _setpriv()
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else list(command)
