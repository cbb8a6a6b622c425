"""Serving a production's files, and only those: a short list of names, resolved inside the production's folder.

`../`, its encodings, absolute paths, backslashes and symlinks that lead out of the folder all end as 404, the
same answer as a file that does not exist, so a probe learns nothing. FileResponse answers Range with 206."""

from __future__ import annotations

import re
from pathlib import Path

from reelcrew.web.errors import NotFound

SERVED = re.compile(r"^(final\.mp4|final\.srt|thumbnail\.jpg|metadata\.json|manifest\.json|script\.json|seo\.json"
                    r"|prompts\.json|clips/clip-\d{2,3}\.mp4)$")
MEDIA_TYPES = {".mp4": "video/mp4", ".srt": "application/x-subrip; charset=utf-8", ".jpg": "image/jpeg",
               ".json": "application/json"}


def production_file(folder: Path, name: str) -> Path:
    """The file `name` of the production in `folder`, or NotFound."""
    missing = NotFound(f"no file {name[:80]!r} in this production",
                       "ask for final.mp4, final.srt, thumbnail.jpg, metadata.json or clips/clip-NN.mp4")
    if not SERVED.match(name):
        raise missing
    root = folder.resolve()
    path = (root / name).resolve()  # follows symlinks: one pointing out of the folder lands outside root
    if not path.is_relative_to(root) or not path.is_file():
        raise missing
    return path


def media_type(path: Path) -> str:
    return MEDIA_TYPES.get(path.suffix, "application/octet-stream")
