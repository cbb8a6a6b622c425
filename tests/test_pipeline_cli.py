"""The integrated pipeline through its CLI: batches, resume after SIGKILL, budgets, repair, bad input."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import deque
from pathlib import Path

import pytest
import srt

from reelcrew.media import decodes, probe
from tests.cli_helpers import RUN
from tests.cli_helpers import cli as cli_process
from tests.cli_helpers import cli_in_process as cli  # a process of its own where that is the point (kill, signals)
from tests.conftest import ROOT
from tests.video_helpers import ledger
from tests.waiting import wait_until


def summary(result):
    return json.loads(result.stdout)["productions"]


@pytest.mark.slow
def test_until_prompts_writes_valid_stage_files_in_json_summary(tmp_path):
    result = cli("--mock", "--topic", "how tea is made", "--scenes", "5", "--until", "prompts", "--json",
                 "-o", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    prod = summary(result)[0]
    folder = Path(prod["folder"])
    prompts = json.loads((folder / "prompts.json").read_text())["prompts"]
    assert len(prompts) == 5 and prod["llm_answers"] == 3
    assert {p.name for p in folder.iterdir()} >= {"script.json", "seo.json", "prompts.json"}


@pytest.mark.slow
# SQLite only: the ledger does nothing here the PostgreSQL runs of test_service and test_video_generation do not
def test_chinese_batch_in_mock_mode_runs_end_to_end(tmp_path):
    topics = tmp_path / "topics.txt"
    topics.write_text("茶是怎么制作的\n# a comment\n熊猫为什么爱吃竹子\n", encoding="utf-8")
    result = cli("--mock", "--topics-file", str(topics), "--scenes", "2", "--json", "-o", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    prods = summary(result)
    assert [p["status"] for p in prods] == ["done", "done"]
    assert [p["topic"] for p in prods] == ["茶是怎么制作的", "熊猫为什么爱吃竹子"]
    for p, other in zip(prods, reversed(prods), strict=True):
        folder = Path(p["folder"])
        assert probe(folder / "final.mp4").duration == pytest.approx(16, abs=0.05)
        subs = list(srt.parse((folder / "final.srt").read_text(encoding="utf-8")))
        spoken = "".join(s.content.replace("\n", "") for s in subs)
        assert p["topic"] in spoken and other["topic"] not in spoken  # its own narration, not its sibling's
        meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        assert meta["seo"]["title"] and (folder / "thumbnail.jpg").stat().st_size > 1000
        assert len(json.loads((folder / "manifest.json").read_text())["clips"]) == 2


@pytest.mark.parametrize("args,env,needle", [
    (["--topic", "  "], {}, "topic is empty"),
    pytest.param(["--topic", "tea"], {"REELCREW_LLM": "gemini", "VEO3_MOCK_MODE": "true"}, "GEMINI_API_KEY",
                 marks=pytest.mark.slow),  # loads CrewAI's Gemini provider before it can refuse
    (["--mock", "--topic", "tea", "--aspect", "4:3"], {}, "4:3"),
    (["--mock", "--topics-file", "empty.txt"], {}, "has no topics"),
    (["--mock", "--topics-file", "missing.txt"], {}, "does not exist"),
    (["--mock", "--topic", "tea"], {"VEO3_RPM": "lots"}, "VEO3_RPM"),
    (["--mock", "--topic", "tea"], {"VEO3_MODEL": "veo-9"}, "VEO3_MODEL"),
    (["--mock", "--topic", "tea"], {"CLIP_SECONDS": "5"}, "clip_seconds"),
    (["--mock", "--topic", "tea"], {"RESOLUTION": "1080p", "CLIP_SECONDS": "6"}, "1080p clips must be 8 s"),
    (["--mock", "--topic", "tea", "-o", "/proc/forbidden"], {}, "not writable"),
])
def test_bad_input_exits_2_with_a_message_naming_the_fix(tmp_path, args, env, needle):
    (tmp_path / "empty.txt").write_text("\n\n")
    result = cli(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr + result.stdout


@pytest.mark.slow
def test_broken_crew_yaml_exits_2_naming_the_file(tmp_path):
    import shutil

    copy = tmp_path / "crews"
    shutil.copytree(ROOT / "crews", copy)
    (copy / "scriptwriter" / "agents.yaml").write_text("scriptwriter: [oops\n")
    result = cli("--mock", "--topic", "tea", "--crews-dir", str(copy), "-o", str(tmp_path / "o"))
    assert result.returncode == 2 and "scriptwriter/agents.yaml" in result.stderr


@pytest.mark.slow
def test_corrupt_ledger_exits_2_and_keeps_finished_files(tmp_path):
    out = tmp_path / "o"
    assert cli("--mock", "--topic", "tea", "--scenes", "1", "--until", "prompts", "-o", str(out)).returncode == 0
    db = Path(ledger().url.removeprefix("sqlite:///"))
    db.write_bytes(b"this is not sqlite" * 100)
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    result = cli("--mock", "--topic", "tea", "-o", str(out))
    assert result.returncode == 2 and "corrupt" in result.stderr and "reelcrew repair --ledger" in result.stderr
    assert "aside" not in result.stderr  # following that advice paid twice (issue 10)
    assert list(out.glob("*/prompts.json"))


@pytest.mark.slow
@pytest.mark.usefixtures("ledger_db")
def test_budget_below_estimate_submits_nothing(real_env, fake, tmp_path):
    result = cli("--topic", "tea", "--scenes", "3", "--yes", "--budget-usd", "1.00", "--json")
    assert result.returncode == 1
    assert "would cost about $2.40" in result.stderr and "nothing was submitted" in result.stderr
    assert fake.submit_attempts == 0


@pytest.mark.slow
# SQLite only: the daily budget on PostgreSQL: test_ledger's test_two_output_folders_share_one_daily_budget
def test_budget_cap_hit_mid_run_stops_submitting_and_stays_resumable(real_env, fake, tmp_path):
    first = cli("--topic", "tea", "--scenes", "2", "--yes", "--until", "clips", "--json")
    assert first.returncode == 0, first.stderr
    result = cli("--topic", "coffee", "--scenes", "3", "--yes", "--json",
                 env={"REELCREW_DAILY_BUDGET_USD": "3.50"})  # $1.60 spent today, room for one more 8 s clip at $0.80
    prod = summary(result)[0]
    assert result.returncode == 1 and prod["status"] == "paused"
    assert prod["clips_done"] == 2 and prod["clips_paused"] == 1
    assert fake.accepted == 4
    resumed = cli("resume", "--yes", "--json", env={"REELCREW_DAILY_BUDGET_USD": "10"})
    assert resumed.returncode == 0, resumed.stderr
    assert fake.accepted == 5


@pytest.mark.slow
# SQLite only: re-attaching on PostgreSQL: test_video_generation's test_restart_reattaches_in_flight_operations...
def test_repair_refetches_a_done_clip_whose_file_was_deleted(real_env, fake, tmp_path):
    first = cli("--topic", "tea", "--scenes", "2", "--yes", "--json")
    folder = Path(summary(first)[0]["folder"])
    (folder / "clips" / "clip-02.mp4").unlink()
    (folder / "final.mp4").unlink()
    repaired = cli("repair")
    assert repaired.returncode == 0 and "re-attach" in repaired.stderr
    again = cli("resume", "--yes", "--json")
    assert again.returncode == 0, again.stderr
    assert (folder / "clips" / "clip-02.mp4").exists() and (folder / "final.mp4").exists()
    assert fake.accepted == 2  # downloaded again from its operation, not paid again


@pytest.mark.slow
def test_repair_says_a_gemini_api_video_older_than_2_days_is_gone_and_points_at_retry(real_env, fake, tmp_path):
    first = cli("--topic", "tea", "--scenes", "2", "--yes", "--json")
    prod = summary(first)[0]
    folder = Path(prod["folder"])
    (folder / "clips" / "clip-02.mp4").unlink()
    store = ledger()
    clip = next(c for c in store.production_clips(prod["id"]) if c.index == 2)
    store.update_clip(clip.key, submitted_at=time.time() - 3 * 24 * 3600)
    downloads = fake.downloads
    repaired = cli("repair")
    assert repaired.returncode == 0, repaired.stderr
    said = " ".join(repaired.stderr.split())
    assert "keeps generated videos 2 days" in said and f"reelcrew retry {prod['id']} --clip 2" in said
    assert "re-attach" not in said and fake.downloads == downloads
    assert store.clip(clip.key).status.value == "failed"


@pytest.mark.slow
def test_real_run_on_a_vertex_project_with_a_stray_api_key_goes_to_the_project_path_with_a_bearer_token(
        real_env, vertex_project, fake, tmp_path):
    from reelcrew.mock_writer import write_prompts, write_script, write_seo
    from reelcrew.settings import load_settings

    style = load_settings().style
    script = write_script("how tea is made", "en", 2, 8, style)
    fake.script.text_answers = deque([script.model_dump_json(), write_seo(script, "how tea is made").model_dump_json(),
                                      write_prompts(script, style, "16:9", "720p").model_dump_json()])
    result = cli("--topic", "how tea is made", "--scenes", "2", "--yes", "--json", env={"REELCREW_LLM": "gemini"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary(result)[0]["status"] == "done"
    google = [r for r in fake.requests if r["path"] != "/token"]
    assert {r["path"].rpartition(":")[2] for r in google} >= {"generateContent", "predictLongRunning",
                                                              "fetchPredictOperation"}
    project = "/v1beta1/projects/test-project/locations/us-central1/publishers/google/models/"
    assert all(r["path"].startswith(project) and r["token"] in fake.tokens_issued and not r["api_key"] for r in google)


def test_doctor_on_a_vertex_project_with_a_stray_api_key_says_it_uses_the_project(real_env, vertex_project, fake):
    result = cli("doctor", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vertex AI project test-project in us-central1 with application default credentials" in result.stdout
    from reelcrew.settings import load_settings

    model = load_settings().gemini_model
    assert any(r["path"].endswith(f"/models/{model}") and r["token"] in fake.tokens_issued and not r["api_key"]
               for r in fake.requests)


@pytest.mark.slow
@pytest.mark.usefixtures("ledger_db")
def test_two_processes_on_the_same_batch_do_not_double_submit(real_env, fake, tmp_path):
    fake.script.latency = 0.3
    args = [*RUN, "--topic", "tea", "--topic", "coffee", "--scenes", "3", "--yes", "--until", "clips", "--json"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
             for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    assert fake.accepted == 6 and max(fake.accepted_by_prompt.values()) == 1


@pytest.mark.slow
@pytest.mark.usefixtures("ledger_db")
def test_kill_nine_at_random_moments_then_resume_pays_each_clip_once(real_env, fake, tmp_path):
    fake.script.latency = 0.4
    out = Path(real_env["REELCREW_OUTPUT_DIR"])
    args = [*RUN, "--topic", "tea", "--topic", "coffee", "--topic", "rice", "--scenes", "3", "--yes", "--json"]
    rng = random.Random(5)
    for _ in range(4):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 5.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = subprocess.run(args, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert final.returncode == 0, final.stderr[-2000:]
    prods = json.loads(final.stdout)["productions"]
    assert [p["status"] for p in prods] == ["done"] * 3
    flagged = json.loads(cli("status", "--json").stdout)["productions"]
    duplicates = sum(1 for p in flagged for c in p["clips"] if c["possible_duplicate"])
    assert 9 <= fake.accepted <= 9 + duplicates
    assert max(fake.accepted_by_prompt.values()) <= 1 + duplicates
    for p in prods:
        assert decodes(p["final"]) is None and probe(p["final"]).duration == pytest.approx(24, abs=0.05)
    assert not list(out.rglob("*.part*"))


@pytest.mark.slow
def test_secrets_never_reach_logs_output_files_or_the_terminal(real_env, fake, tmp_path):
    secret = "AIzaSECRET-test-key-1234567890abcdef"
    # processes of their own: what a real one writes to its terminal and to its output folder's reelcrew.log
    result = cli_process("--topic", "tea", "--scenes", "1", "--yes", "--json", env={"GEMINI_API_KEY": secret,
                                                                                   "VEO3_DEBUG_MODE": "true"})
    assert result.returncode == 0, result.stderr
    shown = cli_process("config", "show", env={"GEMINI_API_KEY": secret})
    assert "GEMINI_API_KEY" in shown.stdout and "**** (set)" in shown.stdout
    out = Path(real_env["REELCREW_OUTPUT_DIR"])
    texts = [result.stdout, result.stderr, shown.stdout, shown.stderr]
    texts += [p.read_text(errors="ignore") for p in out.rglob("*")
              if p.is_file() and p.suffix in (".log", ".json", ".srt")]
    assert all(secret not in t for t in texts)
    log = (out / "reelcrew.log").read_text()
    assert '"production_id"' in log and '"attempt": 1' in log  # structured lines with the clip's context


@pytest.mark.usefixtures("ledger_db")
def test_an_older_ledger_is_migrated_on_open(tmp_path):
    from sqlalchemy import text

    from reelcrew.store import SCHEMA_VERSION, Store

    url = ledger().url
    old = Store(url)
    with old.engine.begin() as con:  # what version 1 looked like
        for statement in ("ALTER TABLE events DROP COLUMN attempt", "ALTER TABLE productions DROP COLUMN owner",
                          "ALTER TABLE productions DROP COLUMN lease_until",
                          "ALTER TABLE productions DROP COLUMN folder",
                          "UPDATE schema_info SET value='1' WHERE key='version'"):
            con.execute(text(statement))
    old.close()
    store = Store(url)
    store.log("note", "after upgrade", attempt=2)
    assert store.recent_events()[-1]["attempt"] == 2
    with store.engine.begin() as con:
        assert con.execute(text("SELECT value FROM schema_info")).scalar() == str(SCHEMA_VERSION)


@pytest.mark.slow
# SQLite only: filtered clips on PostgreSQL: test_video_generation's test_safety_filtered_clip_is_filtered...
def test_retry_regenerates_a_filtered_clip_with_an_edited_prompt_and_recuts(real_env, fake, tmp_path):
    first = cli("--topic", "tea", "--scenes", "2", "--yes", "--json")
    prod = summary(first)[0]
    filtered = cli("retry", prod["id"], "--clip", "2", "--prompt", "UNSAFE version of scene 2", "--yes", "--json")
    after = summary(filtered)[0]
    assert after["clips_filtered"] == 1 and after["clips_done"] == 1
    clips = json.loads(cli("status", prod["id"], "--json").stdout)["productions"][0]["clips"]
    assert clips[1]["status"] == "filtered" and "not be charged" in clips[1]["error"]
    fixed = cli("retry", prod["id"], "--clip", "2", "--prompt", "a calm wide shot of tea fields", "--yes", "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert summary(fixed)[0]["clips_done"] == 2 and fake.accepted == 4
    prompts = json.loads((Path(prod["folder"]) / "prompts.json").read_text())["prompts"]
    assert prompts[1]["prompt"] == "a calm wide shot of tea fields"
    costs = json.loads(cli("cost", "--json").stdout)
    assert costs["total_usd"] == pytest.approx(3 * 0.80)  # the filtered attempt was free


def test_doctor_and_config_init_in_mock_mode(tmp_path):
    doctor = cli("doctor", "--mock", "-o", str(tmp_path / "o"))
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "subtitle font" in doctor.stdout and "ffmpeg" in doctor.stdout
    init = cli("config", "init", "--path", str(tmp_path / ".env"))
    assert init.returncode == 0 and "VEO3_MAX_CONCURRENT" in (tmp_path / ".env").read_text()
    again = cli("config", "init", "--path", str(tmp_path / ".env"))
    assert again.returncode == 2 and "--force" in again.stderr


@pytest.mark.slow
@pytest.mark.usefixtures("ledger_db")
def test_sigterm_stops_promptly_keeps_receipts_and_resume_reattaches(real_env, fake, tmp_path):
    fake.script.latency = 120
    proc = subprocess.Popen([*RUN, "--topic", "tea", "--scenes", "3", "--yes"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    store = ledger()
    wait_until(lambda: len(store.receipts()) >= 2, "two receipts in the ledger", proc=proc)
    proc.send_signal(signal.SIGTERM)
    start = time.time()
    _, stderr = proc.communicate(timeout=60)
    # promptly: the operations take 120 s at the fake; a stop that waited for them would take that long
    assert time.time() - start < 30 and proc.returncode == 130
    assert "reelcrew resume" in stderr
    rows = store.all_clip_rows()
    assert all(r["lease_owner"] is None for r in rows if r["operation_name"])
    assert json.loads(cli("status", "--json").stdout)["productions"][0]["status"] == "interrupted"
    for op in fake.ops.values():
        op["done_at"] = time.time()
    fake.script.latency = 0
    resumed = cli("resume", "--yes", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert fake.accepted == 3


@pytest.mark.usefixtures("ledger_db")
def test_repair_frees_a_clip_stuck_between_intent_and_receipt_and_flags_it(tmp_path):
    from reelcrew.files import HOST
    from reelcrew.models import ClipStatus, VideoPrompt

    out = tmp_path / "o"
    store = ledger()
    clip = store.ensure_clip("p1", VideoPrompt(index=1, scene_index=1, prompt="x"), "veo-3.1-fast-generate-001")
    store.update_clip(clip.key, status=ClipStatus.submitting, lease_owner=f"{HOST}:999999",
                      lease_until=time.time() + 600)
    result = cli("repair", "-o", str(out))
    assert result.returncode == 0 and "possible duplicate" in result.stderr
    fixed = store.clip(clip.key)
    assert fixed.status == ClipStatus.pending and fixed.possible_duplicate
