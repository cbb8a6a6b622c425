"""Settings as users meet them: a copied .env with empty values, and a non-editable install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reelcrew.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_empty_values_in_env_and_dotenv_mean_unset(monkeypatch, tmp_path):
    monkeypatch.setenv("REELCREW_LLM", "")
    monkeypatch.setenv("VEO3_RPM", "")
    (tmp_path / ".env").write_text("SCENES=\nREELCREW_DAILY_BUDGET_USD=\nGEMINI_API_KEY=\nVEO3_MOCK_MODE=\n")
    settings = load_settings()
    assert settings.reelcrew_llm == "gemini" and settings.veo3_rpm == 10 and settings.scenes == 6
    assert settings.reelcrew_daily_budget_usd is None and settings.api_key() is None
    assert settings.veo3_mock_mode is False


def test_a_set_value_still_wins_over_the_yaml(monkeypatch):
    monkeypatch.setenv("SCENES", "3")
    assert load_settings().scenes == 3


@pytest.mark.slow
def test_a_wheel_install_finds_its_config_crews_and_env_template(tmp_path):
    """`pip install .` (not editable) must run from anywhere: the defaults travel as package data."""
    wheels, target, source = tmp_path / "wheels", tmp_path / "site", tmp_path / "source"
    for part in ("src", "config", "crews"):  # a copy, so the build leaves nothing in the checkout
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(source)], check=True, capture_output=True)
    wheel = next(wheels.glob("reelcrew-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "HOME": str(tmp_path / "home")}
    shipped = {p.relative_to(target) for p in (target / "reelcrew").rglob("*.py")}
    written = {p.relative_to(ROOT / "src") for p in (ROOT / "src" / "reelcrew").rglob("*.py")}
    assert written <= shipped, f"modules missing from the wheel (add their package to pyproject): {written - shipped}"
    probe = ("import reelcrew, reelcrew.settings as s; "
             "print(reelcrew.__file__); print(s.DEFAULT_CONFIG); print(s.DEFAULT_CREWS_DIR); "
             "print(s.load_settings().prices['veo-3.1-fast-generate-001']['720p'])")
    out = subprocess.run([sys.executable, "-c", probe], cwd=work, env=env, capture_output=True, text=True, check=True)
    module, config, crews, price = out.stdout.split()
    assert module.startswith(str(target)) and config.startswith(str(target)) and crews.startswith(str(target))
    assert (Path(crews) / "scriptwriter" / "agents.yaml").exists() and float(price) > 0
    init = subprocess.run([sys.executable, "-m", "reelcrew", "config", "init", "--path", "my.env"], cwd=work, env=env,
                          capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    text = (work / "my.env").read_text()
    assert "GEMINI_API_KEY=\n" in text and "VEO3_MAX_CONCURRENT=2" in text
