"""The task bodies and the local runner (issue 12's runner seam): a step run twice does its work once, a follow
step never sleeps on an operation, a quota wait is a countdown, the batch is pipelined (the first final exists
before the last production's script is written) and a production's clips can go in order."""

from __future__ import annotations

import time
from collections import deque

import pytest

from reelcrew import service
from reelcrew.models import ClipStatus
from reelcrew.results import ApprovalPolicy
from reelcrew.runners.local import LocalRunner
from reelcrew.settings import load_settings
from reelcrew.tasks import Step, Tasks


def _planned(settings, topics):
    store = service.open_store(settings)
    return store, service.plan(settings, topics, store)


@pytest.mark.slow
def test_a_submit_step_run_twice_submits_once_and_a_render_run_twice_renders_once(real_env, fake):
    settings = load_settings(scenes=2)
    store, [prod] = _planned(settings, ["tea"])
    tasks = Tasks(settings, store)
    runner = LocalRunner(tasks)
    try:
        steps = tasks.run(Step(task="write", production_id=prod.id))
        assert [(s.task, s.clip_index) for s in steps] == [("submit_clip", 1), ("submit_clip", 2)]
        fake.script.latency = 600  # the operation stays at Veo while the step is delivered again
        first, again = tasks.run(steps[0]), tasks.run(steps[0])
        assert fake.accepted == 1 and first[0].task == "follow_clip"
        assert again[0].task == "submit_clip" and again[0].countdown > 0  # the clip is held: look again later
        for op in fake.ops.values():
            op["done_at"] = time.time()
        fake.script.latency = 0
        for step in (*first, *again, steps[1], steps[1]):
            runner.enqueue(step)
        runner.wait(timeout=120)
        assert fake.accepted == 2 and [len(store.receipts(c.key)) for c in store.production_clips(prod.id)] == [1, 1]
        assert tasks.run(Step(task="render", production_id=prod.id)) == []
        finals = [e for e in store.recent_events(prod.id, limit=200) if e["kind"] == "final"]
        assert len(finals) == 1 and store.production(prod.id).status.value == "done"
        assert Tasks(settings, store).run(Step(task="render", production_id=prod.id)) == []  # another process
        assert len([e for e in store.recent_events(prod.id, limit=200) if e["kind"] == "final"]) == 1
    finally:
        runner.close()
        tasks.close()


@pytest.mark.slow
def test_a_follow_step_polls_once_and_a_quota_429_becomes_a_countdown_not_a_sleep(real_env, fake, monkeypatch):
    monkeypatch.setenv("POLLING_INTERVAL", "20")
    settings = load_settings(scenes=1)
    store, [prod] = _planned(settings, ["tea"])
    tasks = Tasks(settings, store)
    try:
        [submit] = tasks.run(Step(task="write", production_id=prod.id))
        fake.script.retry_delay = "30s"
        fake.script.submit_faults.append("429")
        started = time.monotonic()
        [later] = tasks.run(submit)
        assert (later.task, fake.accepted) == ("submit_clip", 0) and 30 <= later.countdown <= 38
        fake.script.latency = 600
        [follow] = tasks.run(later)
        [poll_again] = tasks.run(follow)  # Veo is still working: one look, then the next one in POLLING_INTERVAL
        assert (poll_again.task, poll_again.countdown, poll_again.owner) == ("follow_clip", 20, follow.owner)
        assert time.monotonic() - started < 10 and fake.accepted == 1
        assert store.clip(follow.clip_key).status == ClipStatus.submitted
    finally:
        tasks.close()


@pytest.mark.slow
def test_the_batch_is_pipelined_the_first_final_is_cut_before_the_last_script_is_written(tmp_path):
    settings = load_settings(reelcrew_llm="mock", veo3_mock_mode=True, reelcrew_output_dir=tmp_path / "out", scenes=1,
                             reelcrew_mock_writer_latency=2.0, reelcrew_writers_concurrency=1)
    topics = ["how tea is made", "why the sky is blue", "how bees dance", "how rain forms"]
    store, prods = _planned(settings, topics)  # one writer at a time: the last script is written at about 20 s
    summaries = service.run(settings, prods, policy=ApprovalPolicy(yes=True), store=store)
    assert [s.status for s in summaries] == ["done"] * 4
    events = sorted((e for p in prods for e in store.recent_events(p.id, limit=200)), key=lambda e: e["id"])
    order = [(e["kind"], e["production_id"], e.get("stage")) for e in events]
    first_final = order.index(("final", prods[0].id, "final"))
    last_script = order.index(("stage", prods[3].id, "script"))
    assert first_final < last_script, order


@pytest.mark.slow
def test_clips_in_order_submit_each_clip_after_the_previous_one_rests(tmp_path):
    settings = load_settings(reelcrew_llm="mock", veo3_mock_mode=True, reelcrew_output_dir=tmp_path / "out", scenes=3,
                             reelcrew_clips_in_order=True)
    store, [prod] = _planned(settings, ["how tea is made"])
    tasks = Tasks(settings, store)
    try:
        queue = deque(tasks.run(Step(task="write", production_id=prod.id, until="clips")))
        assert [s.clip_index for s in queue] == [1]
        submitted: list[int] = []
        while queue:
            step = queue.popleft()
            if step.task == "submit_clip" and step.clip_index not in submitted:
                earlier = [c for c in store.production_clips(prod.id) if c.index < step.clip_index]
                assert all(c.status == ClipStatus.done for c in earlier)  # the previous clip rests first
                submitted.append(step.clip_index)
            queue.extend(tasks.run(step))
        assert submitted == [1, 2, 3]
        assert [c.status for c in store.production_clips(prod.id)] == [ClipStatus.done] * 3
        assert store.production(prod.id).failed_stage == "clips"  # `--until clips`: paused where it was asked
    finally:
        tasks.close()
