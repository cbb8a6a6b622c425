"""The dashboard at /: server-rendered pages (Jinja2) and a little plain JS over the same API."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
