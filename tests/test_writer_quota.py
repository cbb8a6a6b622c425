"""The writers' Gemini calls share the ledger's quota gates and land in the cost ledger (through the fake)."""

from __future__ import annotations

from collections import deque

import pytest

from reelcrew import crews
from reelcrew.llm import build_llm
from reelcrew.settings import DEFAULT_CREWS_DIR, load_settings
from reelcrew.store import open_ledger
from reelcrew.writer_quota import WriterQuota, WritersPaused, writer_estimate_usd


def _good_script(n=3):
    from reelcrew.mock_writer import write_script

    return write_script("how tea is made", "en", n, 8, "cinematic").model_dump_json()


def _writers(fake, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-secret")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
    settings = load_settings()
    store = open_ledger(settings)
    quota = WriterQuota(store, settings)
    quota.production_id = "p-tea"
    return build_llm(settings, quota), store


def brief():
    return crews.brief("how tea is made", "en", 3, "16:9", "cinematic", 8, "720p")


def test_a_per_minute_429_is_waited_out_and_the_tokens_are_priced_in_the_cost_ledger(fake, monkeypatch):
    fake.script.retry_delay = "0.2s"
    fake.script.text_answers = deque([429, _good_script()])
    llm, store = _writers(fake, monkeypatch)
    result = crews.write_script(llm, brief(), DEFAULT_CREWS_DIR)
    assert len(result.value.scenes) == 3 and len(fake.text_requests) == 2
    rows = [r for r in store.cost_rows() if r["kind"] == "llm"]
    # the fake answers 5 prompt tokens and 3 candidate tokens; gemini-3.5-flash costs $1.50 / $9.00 per Mtok
    assert [(r["production_id"], r["input_tokens"], r["output_tokens"]) for r in rows] == [("p-tea", 5, 3)]
    assert rows[0]["usd"] == pytest.approx((5 * 1.50 + 3 * 9.00) / 1e6)
    assert store.spent_usd() == pytest.approx(rows[0]["usd"])  # it counts against the budgets


def test_a_per_day_429_pauses_the_writers_with_a_clear_message(fake, monkeypatch):
    fake.script.text_quota_kind = "PerDay"
    fake.script.text_answers = deque([429, _good_script()])
    llm, store = _writers(fake, monkeypatch)
    with pytest.raises(WritersPaused, match=r"writers' (daily )?Gemini quota .*paused until") as info:
        crews.write_script(llm, brief(), DEFAULT_CREWS_DIR)
    assert "reelcrew resume" in info.value.fix and len(fake.text_requests) == 1
    with pytest.raises(WritersPaused, match="paused"):  # the pause is in the ledger: the next call does not send
        crews.write_script(llm, brief(), DEFAULT_CREWS_DIR)
    assert len(fake.text_requests) == 1


def test_writer_estimate_uses_the_configured_token_prices():
    assert writer_estimate_usd(load_settings(reelcrew_llm="mock"), 2) == 0.0
    expected = 2 * (6000 * 1.5 + 3000 * 9) / 1e6
    assert writer_estimate_usd(load_settings(reelcrew_llm="gemini"), 2) == pytest.approx(expected)


def _run_writers(*args):
    from tests.cli_helpers import cli_in_process

    return cli_in_process(*args, env={"REELCREW_LLM": "gemini"})


def test_writer_tokens_appear_in_reelcrew_cost(real_env, fake):
    fake.script.text_answers = deque([_good_script()])
    result = _run_writers("--topic", "how tea is made", "--scenes", "3", "--until", "script", "--json")
    assert result.returncode == 0, result.stderr
    costs = _run_writers("cost", "--json")
    assert costs.returncode == 0, costs.stderr
    report = __import__("json").loads(costs.stdout)
    assert report["model"]["gemini-3.5-flash"] == pytest.approx((5 * 1.50 + 3 * 9.00) / 1e6)


def test_a_per_day_writer_429_pauses_the_production_saying_until_when(real_env, fake):
    import json

    from tests.video_helpers import ledger

    fake.script.text_quota_kind = "PerDay"
    fake.script.text_answers = deque([429])
    result = _run_writers("--topic", "how tea is made", "--scenes", "3", "--until", "script", "--json")
    prod = json.loads(result.stdout)["productions"][0] if result.stdout.strip() else None
    stored = ledger().production(prod["id"]) if prod else None
    assert stored is not None and stored.status.value == "paused", result.stderr
    assert "paused until" in stored.error and len(fake.text_requests) == 1
