"""How long Google keeps a generated video, and what to tell the user once it is gone.

The Gemini API deletes generated videos 2 days after generation; after that neither a download nor
`reelcrew repair` can fetch them, and the only way to the clip is a new (paid) generation with
`reelcrew retry`. Vertex AI returns the bytes in the operation (or writes them to the user's bucket), so
this rule is about Gemini API operations only, recognised by their name (`models/{model}/operations/{id}`).
"""

from __future__ import annotations

from reelcrew.video.errors import VideoGone  # noqa: F401  (kept importable from here)

GEMINI_API_RETENTION_SECONDS = 2 * 24 * 3600


def on_gemini_api(operation_name: str | None) -> bool:
    return operation_name is not None and operation_name.startswith("models/")


def past_retention(operation_name: str | None, submitted_at: float | None, now: float) -> bool:
    """True when a Gemini API operation is older than the 2 days its video is kept."""
    if not on_gemini_api(operation_name) or not submitted_at:
        return False
    return now - submitted_at > GEMINI_API_RETENTION_SECONDS


GONE = "the Gemini API no longer has this video"


def gone_message(production_id: str, index: int, detail: str | None = None) -> str:
    return (f"{GONE}" + (f" ({detail})" if detail else "")
            + f": it keeps generated videos 2 days. `reelcrew repair` cannot fetch it; run "
              f"`reelcrew retry {production_id} --clip {index}` (a new paid generation)")
