"""Where the shipped defaults live: `config/pipeline.yaml`, the crews' YAML and the `.env` template.

In a checkout (or an editable install) they are the top-level `config/`, `crews/` and `.env.example` that users
edit; a wheel carries `config/` and `crews/` as package data of this package (pyproject's package-dir mapping), so
`pip install .` finds them too. The `.env` template is not in the wheel: there it is written from the settings'
own field descriptions.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[3]


def _shipped(name: str) -> Path:
    if (CHECKOUT / name).is_dir() and (CHECKOUT / "pyproject.toml").exists():
        return CHECKOUT / name
    return Path(str(resources.files("reelcrew.defaults").joinpath(name)))


def config_file() -> Path:
    """The default settings file (`config/pipeline.yaml`)."""
    return _shipped("config") / "pipeline.yaml"


def crews_dir() -> Path:
    """The default crews folder (`crews/<name>/agents.yaml` and `tasks.yaml`)."""
    return _shipped("crews")


def env_template() -> str | None:
    """The commented `.env.example` of a checkout, or None when installed from a wheel."""
    path = CHECKOUT / ".env.example"
    return path.read_text(encoding="utf-8") if path.exists() else None
