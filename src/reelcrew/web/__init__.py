"""`reelcrew serve`: the REST API, the live dashboard and the embedded runner, one process over the service layer."""

from reelcrew.web.app import create_app

__all__ = ["create_app"]
