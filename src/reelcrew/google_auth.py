"""Which credentials a google-genai client uses: one place for Veo, `reelcrew doctor` and the writers' choice.

On Vertex AI a project (application default credentials) wins over an API key that happens to be in the
environment; express mode (an API key on Vertex) only when GOOGLE_VERTEX_EXPRESS=true asks for it. The SDK
itself prefers an API key passed to it, and CrewAI passes one whenever the environment holds it, so the
choice is made here, explicitly, and never left to either library.
"""

from __future__ import annotations

from typing import Any

from reelcrew.errors import ConfigError
from reelcrew.settings import Settings


def genai_client(settings: Settings, http_options: Any = None):
    """A `google.genai.Client` for the configured backend (Gemini API, Vertex project, or Vertex express)."""
    from google import genai

    if settings.google_genai_use_vertexai:
        if settings.vertex_auth() == "express":
            return genai.Client(vertexai=True, api_key=settings.api_key(), http_options=http_options)
        # project and location passed explicitly: the SDK then ignores GOOGLE_API_KEY / GEMINI_API_KEY
        return genai.Client(vertexai=True, project=settings.google_cloud_project,
                            location=settings.google_cloud_location, http_options=http_options)
    key = settings.api_key()
    if not key:
        raise ConfigError("no API key for the Gemini API",
                          "set GEMINI_API_KEY (or GOOGLE_GENAI_USE_VERTEXAI=true with GOOGLE_CLOUD_PROJECT), "
                          "or use --mock / VEO3_MOCK_MODE=true to rehearse offline")
    return genai.Client(api_key=key, http_options=http_options)


def credentials_summary(settings: Settings) -> str:
    """What `reelcrew doctor` shows: which credentials will be used (never the key itself)."""
    if not settings.google_genai_use_vertexai:
        return "Gemini API key" if settings.api_key() else "none"
    if settings.vertex_auth() == "express":
        return "Vertex AI express mode (API key; Veo's predictLongRunning is not served there)"
    return (f"Vertex AI project {settings.google_cloud_project} in {settings.google_cloud_location} "
            f"with application default credentials")
