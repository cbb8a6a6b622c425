"""SEO grounded in Google Search (issue 15), through the real google-genai SDK against the fake Google server:
the search call carries the tool, its queries and sources reach seo.json, its tokens and search fee reach the
cost ledger, a failed search never fails the production, and the estimate shows the extras on their own lines."""

from __future__ import annotations

import json
from collections import deque

import pytest

from reelcrew import mock_writer
from reelcrew.models import SeoDraft
from reelcrew.settings import load_settings
from reelcrew.writer_quota import GROUNDING_QUERIES, GROUNDING_TOKENS, REWRITE_TOKENS

GROUNDED_NOTES = "1. Related searches: how tea is made at home\n2. Hashtags: #tea #teatime\n3. Angles: cold brew"
# gemini-3.5-flash in config/pipeline.yaml: $1.50 / $9.00 per million tokens, $0.014 per search query
PER_IN, PER_OUT, PER_QUERY = 1.50 / 1e6, 9.00 / 1e6, 0.014


def _written_script(settings, store):
    """A planned production whose script is written (the mock's), so only the SEO stage talks to the fake."""
    from reelcrew.pipeline import Pipeline

    pipeline = Pipeline(settings, store)
    [prod] = pipeline.plan(["how tea is made"])
    script = mock_writer.write_script(prod.topic, prod.language, settings.scenes, settings.clip_seconds,
                                      settings.style)
    store.save_stage(prod.id, "script", script.model_dump_json(), 1)
    return pipeline, prod, script


def _seo_answer(script) -> str:
    return SeoDraft.model_validate(mock_writer.write_seo(script, "how tea is made").model_dump()).model_dump_json()


def _grounded_settings(**extra):
    from reelcrew.store import open_ledger

    settings = load_settings(reelcrew_llm="gemini", seo_grounding=True, scenes=2, clip_seconds=4, **extra)
    return settings, open_ledger(settings)


def test_the_search_call_carries_the_tool_and_its_queries_sources_and_cost_reach_seo_json_and_the_ledger(
        real_env, fake):
    settings, store = _grounded_settings()
    pipeline, prod, script = _written_script(settings, store)
    fake.script.text_answers = deque([GROUNDED_NOTES, _seo_answer(script)])
    pipeline.run([prod], until="seo")

    search, agent = fake.text_requests
    assert search["tools"] == [{"googleSearch": {}}]
    assert "responseMimeType" not in search.get("generationConfig", {})  # plain text: no JSON mode, no schema
    assert "how tea is made" in json.dumps(search["contents"], ensure_ascii=False)
    assert "tools" not in agent and agent["generationConfig"]["responseMimeType"] == "application/json"
    assert "cold brew" in json.dumps(agent["contents"])  # the agent writes with the search's findings
    seo = json.loads((pipeline.folder(prod.id) / "seo.json").read_text())
    # Google's empty query is dropped; the pages in the order Google gave them
    assert seo["search_queries"] == ["how tea is made", "tea processing steps 2026"]
    assert [s["title"] for s in seo["sources"]] == ["tea.example.org", "Tea processing - Wikipedia"]
    assert seo["sources"][0]["uri"].startswith("https://vertexaisearch.cloud.google.com/grounding-api-redirect/")
    assert seo["grounding"] == "" and seo["title"]
    [row] = [r for r in store.cost_rows() if r["kind"] == "grounding"]
    # the fake reports 5 prompt + 40 tool-use (search results) tokens in, 3 out; two queries ran
    assert (row["production_id"], row["input_tokens"], row["output_tokens"]) == (prod.id, 45, 3)
    assert row["usd"] == pytest.approx(45 * PER_IN + 3 * PER_OUT + 2 * PER_QUERY)
    assert [e["kind"] for e in store.recent_events(prod.id, 50) if e["kind"].startswith("ground")] == ["grounded"]
    # the SEO agent's own tokens are this production's too (its script was written before this run)
    assert [r["production_id"] for r in store.cost_rows() if r["kind"] == "llm"] == [prod.id]

    store.delete_stage(prod.id, "seo")  # the SEO written again (an edit-and-retry): the paid search is reused
    fake.script.text_answers = deque([_seo_answer(script)])
    pipeline.run([prod], until="seo")
    assert len(fake.text_requests) == 3 and "tools" not in fake.text_requests[-1]
    assert len([r for r in store.cost_rows() if r["kind"] == "grounding"]) == 1


def test_grounding_on_a_vertex_project_goes_through_the_project_path(vertex_project, fake, monkeypatch):
    from reelcrew.grounding import search_for_seo
    from reelcrew.store import open_ledger
    from reelcrew.writer_quota import WriterQuota

    settings = load_settings(reelcrew_llm="gemini", seo_grounding=True)
    quota = WriterQuota(open_ledger(settings), settings)
    fake.script.text_answers = deque([GROUNDED_NOTES])
    found = search_for_seo(settings, quota, "how tea is made", "English")
    assert len(found.sources) == 2 and found.queries[0] == "how tea is made"
    [call] = [r for r in fake.requests if r["path"].endswith(":generateContent")]
    assert call["path"].startswith("/v1beta1/projects/test-project/locations/us-central1/") and call["token"]
    assert fake.text_requests[0]["tools"] == [{"googleSearch": {}}]


def test_a_search_that_keeps_failing_leaves_seo_json_without_sources_and_a_warning(real_env, fake):
    settings, store = _grounded_settings()
    pipeline, prod, script = _written_script(settings, store)
    fake.script.text_answers = deque([500, 429, 503, _seo_answer(script)])  # three tries, then the agent
    pipeline.run([prod], until="seo")

    assert [bool(r.get("tools")) for r in fake.text_requests] == [True, True, True, False]
    seo = json.loads((pipeline.folder(prod.id) / "seo.json").read_text())
    assert seo["sources"] == [] and seo["search_queries"] == [] and seo["title"]
    assert seo["grounding"].startswith("grounding failed") and "503" in seo["grounding"]
    [warning] = [e for e in store.recent_events(prod.id, 50) if e["kind"] == "grounding_failed"]
    assert "3 attempts failed" in warning["message"]
    assert store.production(prod.id).status.value == "paused"  # stopped where asked (--until seo), not failed
    assert not [r for r in store.cost_rows() if r["kind"] == "grounding"]  # nothing answered, nothing paid


def test_a_search_sent_and_never_answered_is_not_sent_again(real_env, fake):
    settings, store = _grounded_settings()
    pipeline, prod, script = _written_script(settings, store)
    fake.script.text_answers = deque(["reset", _seo_answer(script)])  # the connection drops after the request
    pipeline.run([prod], until="seo")
    assert [bool(r.get("tools")) for r in fake.text_requests] == [True, False]  # Google may have billed it
    seo = json.loads((pipeline.folder(prod.id) / "seo.json").read_text())
    assert "may have been charged" in seo["grounding"] and seo["sources"] == []


def test_a_per_day_search_quota_gives_up_at_once_and_leaves_the_writers_running(real_env, fake):
    fake.script.text_quota_kind = "PerDay"
    settings, store = _grounded_settings()
    pipeline, prod, script = _written_script(settings, store)
    fake.script.text_answers = deque([429, _seo_answer(script)])
    pipeline.run([prod], until="seo")
    assert len(fake.text_requests) == 2  # no second search; the SEO agent still wrote (its quota is not paused)
    seo = json.loads((pipeline.folder(prod.id) / "seo.json").read_text())
    assert "quota" in seo["grounding"] and seo["sources"] == []


def test_the_mock_writers_never_search_and_say_so(real_env, fake):
    from reelcrew.store import open_ledger

    settings = load_settings(seo_grounding=True, scenes=2, clip_seconds=4)  # REELCREW_LLM=mock (real_env)
    store = open_ledger(settings)
    pipeline, prod, _ = _written_script(settings, store)
    pipeline.run([prod], until="seo")
    assert fake.text_requests == []
    seo = json.loads((pipeline.folder(prod.id) / "seo.json").read_text())
    assert seo["sources"] == [] and "mock writers" in seo["grounding"]


def test_the_estimate_has_a_grounding_line_and_a_rewrites_line_the_budget_counts(real_env, fake, capsys):
    from reelcrew import service
    from reelcrew.cli.render import Bars, approval_policy
    from reelcrew.errors import BudgetError
    from reelcrew.results import ApprovalPolicy

    settings, store = _grounded_settings(veo3_rephrase_attempts=2)
    pipeline, prod, script = _written_script(settings, store)
    estimate = service.estimate(settings, [prod], store)
    grounding = (GROUNDING_TOKENS[0] * PER_IN + GROUNDING_TOKENS[1] * PER_OUT + GROUNDING_QUERIES * PER_QUERY)
    rewrites = 2 * 2 * (REWRITE_TOKENS[0] * PER_IN + REWRITE_TOKENS[1] * PER_OUT)  # 2 clips x 2 attempts
    assert estimate.grounding_usd == pytest.approx(grounding, abs=1e-4)
    assert estimate.rewrites_usd == pytest.approx(rewrites, abs=1e-4)
    assert estimate.usd == pytest.approx(estimate.video_usd + estimate.writers_usd + grounding + rewrites, abs=2e-4)

    assert dict(estimate.model_dump()["lines"])["SEO search grounding"] == estimate.grounding_usd  # the API's too
    with Bars(False) as bars:
        service.approve(settings, estimate, approval_policy(bars, True, None), store, (prod.id,))
    shown = capsys.readouterr().err
    assert "SEO search grounding:" in shown and f"${estimate.grounding_usd:.4f}" in shown
    assert "rewrites of filtered prompts (at most):" in shown and f"${estimate.rewrites_usd:.4f}" in shown
    with pytest.raises(BudgetError):  # the extras are in what --budget-usd checks
        service.approve(settings, estimate, ApprovalPolicy(yes=True, budget_usd=estimate.usd - 0.01), store)

    off = load_settings(reelcrew_llm="gemini", scenes=2, clip_seconds=4, veo3_rephrase_attempts=0)
    assert [name for name, _ in service.estimate(off, [prod], store).lines] == ["Veo clips", "writers' tokens"]
    store.save_stage(prod.id, "seo", _seo_answer(script), 1)
    assert service.estimate(settings, [prod], store).grounding_usd == 0  # written: the search is behind us
