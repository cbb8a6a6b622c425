"""What a video backend can tell the generator, in our words (never the SDK's).

Each backend translates its transport's exceptions (google-genai, httpx, google-auth) into these, so the
generator decides on meaning, not on status codes: a quota is waited out, a rejection is final, an
unavailable service is retried with back-off (nothing was created), and an unknown outcome is never resent
(Veo may have accepted, and will charge, the request).
"""

from __future__ import annotations

from typing import Literal

QuotaWindow = Literal["minute", "day", "unknown"]


class BackendError(Exception):
    """Base of everything a backend raises on purpose."""


class QuotaExceeded(BackendError):
    """429: the quota of `window` is used up; `retry_after` seconds is the service's own hint (RetryInfo)."""

    def __init__(self, window: QuotaWindow = "unknown", retry_after: float | None = None, message: str = ""):
        self.window, self.retry_after = window, retry_after
        super().__init__(message or f"quota exceeded ({window})")


class Rejected(BackendError):
    """The request is wrong (400, 404 unknown model, 403 ...): sending it again cannot help."""

    def __init__(self, code: int | None, message: str, status: str | None = None):
        self.code, self.status, self.message = code, status, message
        super().__init__(f"{code} {status or ''}: {message}".strip())


class Unavailable(BackendError):
    """Nothing was created (503, connection refused, a retryable credentials failure): safe to retry later."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class CredentialsRefused(BackendError):
    """The credentials cannot produce a token (not retryable): nothing reached the service."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class OutcomeUnknown(BackendError):
    """The request may have been accepted (timeout or 5xx after sending): never resend it blindly."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class VideoGone(BackendError):
    """The service no longer has the video (expired or deleted): retrying the download cannot help."""


class OperationNotFound(BackendError):
    """The service does not know the operation (404 on a poll): it expired, was deleted, or belongs to another
    backend. Polling again cannot help, and resubmitting would be a new paid request: the clip fails at once."""
