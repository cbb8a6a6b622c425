"""What a killed run leaves behind, swept by the next start: temp render folders and temp files of dead owners.

Temp names carry their owner (`pid-random@host`, see `files.temp_tag`); a leftover is deleted only when its owner
is a process of this host that no longer runs, so a live run's work (here or on another machine sharing the
folder) is never touched. Finished files, stage files, receipts and the ledger are never leftovers.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path

from reelcrew.files import leftover_part, tag_alive, temp_tag

log = logging.getLogger("reelcrew.leftovers")
RENDER_PREFIX = "reelcrew-cut."
_RENDER_OWNER = re.compile(rf"^{re.escape(RENDER_PREFIX)}(\d+-[0-9a-f]+@[A-Za-z0-9_-]+)\.")


def render_folder() -> tempfile.TemporaryDirectory:
    """A temp render folder named after its owner, so the next start can sweep it if this process is killed."""
    return tempfile.TemporaryDirectory(prefix=f"{RENDER_PREFIX}{temp_tag()}.")


def sweep_leftovers(out: Path | None = None) -> list[Path]:
    """Delete the temp render folders (in the temp folder) and temp files (under `out`) of dead processes."""
    swept: list[Path] = []
    for folder in Path(tempfile.gettempdir()).glob(f"{RENDER_PREFIX}*"):
        match = _RENDER_OWNER.match(folder.name)
        if match and folder.is_dir() and not tag_alive(match.group(1)):
            shutil.rmtree(folder, ignore_errors=True)
            swept.append(folder)
    if out is not None and out.is_dir():
        for part in out.rglob(".*.part*"):
            if part.is_file() and leftover_part(part):
                part.unlink(missing_ok=True)
                swept.append(part)
    if swept:
        log.info("swept %d leftover(s) of killed runs: %s", len(swept), ", ".join(str(p) for p in swept[:10]))
    return swept
