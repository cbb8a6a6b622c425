"""Backends speak our errors, and one registry says which models, fields and prices each one has."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reelcrew.models import VideoPrompt


def test_generator_module_imports_no_google_sdk():
    code = ("import sys, reelcrew.video.generator; "
            "print(sorted(m for m in sys.modules if m.startswith(('google.genai', 'google.auth', 'httpx'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_mock_rehearsed_429_is_our_quota_exceeded(tmp_path):
    from reelcrew.settings import load_settings
    from reelcrew.video.backends import make_backend
    from reelcrew.video.errors import QuotaExceeded

    backend = make_backend(load_settings(veo3_mock_mode=True, veo3_mock_quota_rate=1.0))
    assert backend.name == "mock"
    with pytest.raises(QuotaExceeded) as info:
        backend.submit(VideoPrompt(index=1, scene_index=1, prompt="a fox"), "veo-3.1-fast-generate-001")
    assert (info.value.window, info.value.retry_after) == ("minute", 1.0)


def test_unknown_model_is_refused_with_the_list_of_known_ones():
    from reelcrew.errors import ConfigError
    from reelcrew.settings import load_settings
    from reelcrew.video.registry import UnknownModel, known_models, model_limits

    with pytest.raises(UnknownModel, match="veo-3.1-fast-generate-001"):
        model_limits("veo-9-ultra", "vertex")
    with pytest.raises(ConfigError, match="VEO3_MODEL") as info:
        load_settings(veo3_model="veo-9-ultra")
    assert all(model in info.value.problem for model in known_models("gemini"))
    with pytest.raises(ValueError, match="unknown Veo model 'veo-9-ultra'"):
        VideoPrompt(index=1, scene_index=1, prompt="a fox").check_against("veo-9-ultra")


def test_registry_prices_the_mock_at_zero_and_lets_config_override_real_prices():
    from reelcrew.settings import load_settings

    assert load_settings(veo3_mock_mode=True).price_per_second("veo-3.1-generate-001", "720p") == 0.0
    assert load_settings(prices={}).price_per_second("veo-3.1-fast-generate-001", "1080p") == 0.12  # default
    custom = load_settings(prices={"veo-3.1-fast-generate-001": {"720p": 0.07}})
    assert custom.price_per_second("veo-3.1-fast-generate-001", "720p") == 0.07


def test_seed_is_sent_only_where_the_registry_says_the_backend_accepts_it():
    from reelcrew.video.registry import BACKENDS

    assert "seed" in BACKENDS["vertex"].models["veo-3.1-generate-001"].accepts
    assert "seed" not in BACKENDS["gemini"].models["veo-3.1-generate-001"].accepts


def test_clip_key_of_existing_ledgers_is_stable_and_new_fields_change_it():
    prompt = VideoPrompt(index=1, scene_index=1, prompt="a fox", seed=3)
    model = "veo-3.1-fast-generate-001"
    # the key this prompt had before variant/audio/enhance/sample-count existed (computed by the old code)
    assert prompt.clip_key(model) == "67d401fdde4670ce62b53950601bef40"
    keys = {prompt.clip_key(model), prompt.model_copy(update={"variant": 1}).clip_key(model),
            prompt.clip_key(model, audio=False), prompt.clip_key(model, enhance_prompt=True),
            prompt.clip_key(model, sample_count=2)}
    assert len(keys) == 5


@pytest.mark.parametrize("fault, kind, window", [
    ("429-day", "QuotaExceeded", "day"), ("429", "QuotaExceeded", "minute"), ("429-bare", "QuotaExceeded", "unknown"),
    ("503", "Unavailable", None), ("500", "OutcomeUnknown", None)])
def test_the_gemini_backend_translates_the_wire_into_our_errors(real_env, fake, fault, kind, window):
    from collections import deque

    from reelcrew.settings import load_settings
    from reelcrew.video import errors
    from reelcrew.video.backends import make_backend

    fake.script.submit_faults = deque([fault])
    backend = make_backend(load_settings())
    assert backend.name == "gemini"
    with pytest.raises(getattr(errors, kind)) as info:
        backend.submit(VideoPrompt(index=1, scene_index=1, prompt="a fox"), "veo-3.1-fast-generate-001")
    assert getattr(info.value, "window", None) == window
