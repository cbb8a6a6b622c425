"""The service layer called directly, as the web API will call it: plan → estimate → approve → run → status →
cost → repair, on the mock pipeline and on the real SDK against the fake Google server. Also: importing the CLI
alone registers every command, and a ledger from before the status names reads `pending` as `queued`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reelcrew import service
from reelcrew.errors import BudgetError
from reelcrew.models import ProductionStatus
from reelcrew.results import ApprovalPolicy
from reelcrew.settings import load_settings
from tests.video_helpers import ledger

COMMANDS = {"run", "resume", "retry", "cancel", "status", "repair", "cost", "doctor", "config", "assemble", "ledger",
            "backup", "restore", "prune", "serve", "token", "slo", "worker", "beat", "dead"}


def test_mock_production_through_the_service_from_plan_to_repair(tmp_path):
    settings = load_settings(reelcrew_llm="mock", veo3_mock_mode=True, reelcrew_output_dir=tmp_path / "out", scenes=2)
    store = service.open_store(settings)
    prods = service.plan(settings, ["how tea is made"], store)
    assert [p.status for p in prods] == [ProductionStatus.queued]
    free = service.estimate(settings, prods, store)
    assert (free.clips, free.usd) == (0, 0.0)
    [done] = service.run(settings, prods, store=store)
    assert (done.status, done.stage, done.clips_done) == ("done", "final", 2) and done.final
    report = service.status(settings, prods[0].id, store)
    assert [c.status for c in report.productions[0].clips] == ["done", "done"]
    assert report.productions[0].status == "done"
    # no artifact store set: the references are the output folder's own files, nothing is copied
    assert [c.artifact for c in report.productions[0].clips] == [c.path for c in store.production_clips(prods[0].id)]
    assert done.final_artifact == str(tmp_path / "out" / prods[0].id / "final.mp4")
    spent = service.cost(settings, store)
    assert spent.total_usd == 0.0 and spent.possible_extra_charges == 0

    clip_file = tmp_path / "out" / prods[0].id / "clips" / "clip-02.mp4"
    clip_file.unlink()
    (tmp_path / "out" / prods[0].id / "final.mp4").unlink()
    repaired = service.repair(settings, store)
    assert any(f"{prods[0].id} clip 2: file missing" in line for line in repaired.fixed), repaired
    assert any("final.mp4 missing" in line for line in repaired.fixed)
    assert service.status(settings, store=store).productions[0].status == "queued"
    [again] = service.run(settings, service.unfinished(settings, store), store=store)
    assert again.status == "done" and clip_file.exists()
    assert service.repair(settings, store).clean


def test_real_mode_estimate_approval_and_cost_through_the_service(real_env, fake):
    settings = load_settings(scenes=3)
    store = service.open_store(settings)
    prods = service.plan(settings, ["tea"], store)
    planned = service.estimate(settings, prods, store)  # before the writers: scenes × clip_seconds at the price
    assert (planned.clips, planned.seconds, planned.usd) == (3, 24, 2.40)

    with pytest.raises(BudgetError, match=r"would cost about \$2\.40"):
        service.approve(settings, planned, ApprovalPolicy(budget_usd=1.0), store)
    with pytest.raises(BudgetError, match="not confirmed"):
        service.approve(settings, planned, ApprovalPolicy(ask=lambda estimate: False), store)
    asked = []
    approval = service.approve(settings, planned, ApprovalPolicy(ask=lambda e: asked.append(e.usd) or True), store)
    assert approval.approved_by == "prompt" and asked == [2.40]

    with pytest.raises(BudgetError):  # the run asks before the first paid submit; a no submits nothing
        service.run(settings, prods, policy=ApprovalPolicy(ask=lambda estimate: False), store=store)
    assert fake.submit_attempts == 0
    waiting = service.status(settings, store=store).productions[0]
    assert (waiting.status, waiting.stage) == ("awaiting_approval", "clips")
    written = service.estimate(settings, prods, store)  # now from the written prompts
    assert (written.clips, written.usd) == (3, 2.40)

    [done] = service.run(settings, prods, policy=ApprovalPolicy(yes=True), store=store)
    assert done.status == "done" and fake.accepted == 3
    assert service.estimate(settings, prods, store).clips == 0  # nothing left to pay for
    spent = service.cost(settings, store)
    assert spent.total_usd == pytest.approx(2.40) and spent.production == {prods[0].id: pytest.approx(2.40)}
    assert any(e["kind"] == "approval" for e in store.recent_events(prods[0].id, limit=100))


def test_importing_the_cli_alone_registers_every_command():
    listing = ("import typer.main; from reelcrew.cli import app; "
               "print(' '.join(sorted(typer.main.get_command(app).commands)))")
    names = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True, check=True).stdout.split()
    assert set(names) == COMMANDS
    shown = subprocess.run([sys.executable, "-m", "reelcrew.cli", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and all(f" {name} " in shown.stdout for name in COMMANDS)


@pytest.mark.usefixtures("ledger_db")
def test_a_ledger_from_before_the_status_names_reads_pending_as_queued():
    from sqlalchemy import text

    from reelcrew.models import Production
    from reelcrew.store import Store

    url = ledger().url
    old = Store(url)
    old.upsert_production(Production(id="p-old", topic="tea", language="en", scenes=2, aspect_ratio="16:9",
                                     style="x"))
    with old.engine.begin() as con:  # what a version 4 ledger held
        con.execute(text("UPDATE productions SET status='pending' WHERE id='p-old'"))
        con.execute(text("UPDATE schema_info SET value='4' WHERE key='version'"))
    old.close()
    store = Store(url)
    assert store.production("p-old").status == ProductionStatus.queued
    settings = load_settings()
    assert [p.id for p in service.unfinished(settings, store)] == ["p-old"]
    assert service.status(settings, "p-old", store).productions[0].status == "queued"
