"""The artifact store: clips and finals in an S3-compatible bucket (moto's server on 127.0.0.1) with their sha256 in
the ledger; another working folder (another machine) re-cuts from the bucket and pays nothing; a corrupted object
is refused and fetched again from its operation; an unreachable store is refused before any spend; the worker's
cache is cleaned by age and size."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from reelcrew import artifacts, service
from reelcrew.errors import ConfigError
from reelcrew.media import decodes, probe
from reelcrew.results import ApprovalPolicy
from reelcrew.settings import load_settings
from tests.cli_helpers import cli_in_process
from tests.servers import free_port

FINAL_FILES = {"final.mp4", "final.srt", "thumbnail.jpg", "metadata.json"}


def object_sha256(s3, ref: str) -> str:
    bucket, key = artifacts.parse_s3_url(ref)
    return hashlib.sha256(s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()


def produce(scenes: int = 2):
    settings = load_settings(scenes=scenes)
    store = service.open_store(settings)
    prods = service.plan(settings, ["how tea is made"], store)
    [summary] = service.run(settings, prods, store=store, policy=ApprovalPolicy(yes=True))
    return settings, store, summary


def move_to_another_machine(monkeypatch, tmp_path: Path, name: str) -> None:
    """Another HOME (state folder, cache) and output folder; the first machine's files are gone."""
    shutil.rmtree(tmp_path / "out")
    monkeypatch.setenv("HOME", str(tmp_path / name / "home"))
    monkeypatch.setenv("REELCREW_OUTPUT_DIR", str(tmp_path / name / "out"))


@pytest.mark.servers
@pytest.mark.slow
def test_every_clip_and_the_final_are_stored_with_their_sha256_and_another_machine_recuts_paying_nothing(
        real_env, fake, s3, postgres, monkeypatch, tmp_path):
    monkeypatch.setenv("REELCREW_DB", postgres.database())  # one ledger for both working folders
    settings, store, summary = produce()
    assert summary.status == "done", summary
    clips = store.production_clips(summary.id)
    assert len(clips) == 2 and fake.accepted == 2
    for clip in clips:
        assert clip.artifact == f"s3://{s3.bucket}/studio/clips/{clip.key}.mp4"
        local = hashlib.sha256(Path(clip.path).read_bytes()).hexdigest()
        assert object_sha256(s3, clip.artifact) == clip.sha256 == local
    stored = store.production_artifacts(summary.id)
    assert FINAL_FILES <= set(stored)
    for name, item in stored.items():
        assert item["ref"] == f"s3://{s3.bucket}/studio/productions/{summary.id}/{name}"
        assert object_sha256(s3, item["ref"]) == item["sha256"]
    assert summary.final_artifact == stored["final.mp4"]["ref"]
    report = service.status(settings, summary.id, store).productions[0]
    assert [c.artifact for c in report.clips] == [c.artifact for c in clips]

    move_to_another_machine(monkeypatch, tmp_path, "machine2")
    settings2 = load_settings()
    [again] = service.assemble(settings2, summary.id, store=service.open_store(settings2))
    assert again.status == "done", again
    assert fake.accepted == 2 and service.cost(settings2).total_usd == pytest.approx(2 * 8 * 0.10)  # nothing paid
    cached = sorted(settings2.cache_dir.rglob("*.mp4"))
    assert [p.name for p in cached] == sorted(f"{c.key}.mp4" for c in clips)  # fetched into machine 2's cache
    final = Path(again.final)
    assert decodes(final) is None and probe(final).duration == pytest.approx(16, abs=0.1)
    assert object_sha256(s3, again.final_artifact) == hashlib.sha256(final.read_bytes()).hexdigest()


@pytest.mark.servers
@pytest.mark.slow
def test_a_corrupted_object_is_refused_and_fetched_again_from_its_operation_without_paying(
        real_env, fake, s3, monkeypatch, tmp_path):
    settings, store, summary = produce()
    first, second = store.production_clips(summary.id)
    bucket, key = artifacts.parse_s3_url(first.artifact)
    s3.client.put_object(Bucket=bucket, Key=key, Body=b"not the clip that was paid for",
                         Metadata={"sha256": first.sha256})  # damaged in the store, even its metadata lies
    for clip in (first, second):
        Path(clip.path).unlink()  # this machine no longer has them: the store must be used

    [again] = service.assemble(settings, summary.id, store=store)
    assert again.status == "done", again
    refused = [e for e in store.recent_events(summary.id, 50) if e["kind"] == "artifact_refused"]
    assert len(refused) == 1 and first.artifact in refused[0]["message"] and "checksum" in refused[0]["message"]
    assert fake.accepted == 2 and len([r for r in store.cost_rows() if r["kind"] == "clip"]) == 2  # paid once each
    assert object_sha256(s3, first.artifact) == store.clip(first.key).sha256 == first.sha256  # the store is healed
    assert decodes(Path(again.final)) is None


def test_an_unreachable_store_is_refused_before_any_spend_with_exit_2_and_the_masked_url(real_env, fake, tmp_path):
    endpoint = f"http://minio-user:s3cr3t-pass@127.0.0.1:{free_port()}"  # nothing listens there
    env = {"REELCREW_ARTIFACTS": "s3://studio-bucket/reels", "AWS_ENDPOINT_URL": endpoint,
           "AWS_ACCESS_KEY_ID": "test-access-key", "AWS_SECRET_ACCESS_KEY": "test-secret-key"}
    result = cli_in_process("--topic", "tea", "--scenes", "2", "--yes", env=env)
    assert result.returncode == 2, result.stderr
    said = " ".join((result.stdout + result.stderr).split())
    assert "s3://studio-bucket/reels" in said and "****@127.0.0.1" in said and "cannot reach" in said
    assert "s3cr3t-pass" not in said and "test-secret-key" not in said
    assert "REELCREW_ARTIFACTS_ENDPOINT" in said  # the fix
    assert fake.accepted == 0


def test_the_store_url_must_be_s3_without_credentials():
    assert artifacts.parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert load_settings(reelcrew_artifacts="local").reelcrew_artifacts is None
    for bad in ("bucket/prefix", "s3://key:secret@bucket/p", "http://bucket"):
        with pytest.raises(ConfigError, match="s3://bucket/prefix") as refused:
            load_settings(reelcrew_artifacts=bad)
        assert "secret" not in str(refused.value).replace("SECRET", "")


def test_the_cache_keeps_recent_copies_within_its_size_and_removes_the_rest(tmp_path):
    settings = load_settings(reelcrew_cache_dir=tmp_path / "cache", reelcrew_cache_max_mb=1,
                             reelcrew_cache_max_age_hours=1)
    root = settings.cache_dir / "bucket" / "clips"
    root.mkdir(parents=True)
    now = time.time()
    ages = {"old.mp4": 2 * 3600, "older-but-small.mp4": 3 * 3600, "a.mp4": 300, "b.mp4": 200, "c.mp4": 100}
    for name, age in ages.items():
        (root / name).write_bytes(b"x" * (400 * 1024))
        os.utime(root / name, (now - age, now - age))
    (settings.cache_dir.parent / "kept.txt").write_text("outside the cache")

    preview = artifacts.clean_cache(settings, dry_run=True, now=now)
    assert {p.name for p in preview.removed} == {"old.mp4", "older-but-small.mp4", "a.mp4"}
    assert all((root / name).exists() for name in ages)  # a dry run removes nothing

    cleaned = artifacts.clean_cache(settings, now=now)
    assert sorted(p.name for p in root.iterdir()) == ["b.mp4", "c.mp4"]  # the newest that fit in 1 MiB
    assert cleaned.freed_bytes == 3 * 400 * 1024
    assert (settings.cache_dir.parent / "kept.txt").exists()


def test_prune_trims_the_artifact_cache_by_its_own_age_and_says_what_it_freed(tmp_path):
    from reelcrew.service.backup import prune

    settings = load_settings(reelcrew_cache_dir=tmp_path / "cache", reelcrew_output_dir=tmp_path / "out")
    cached = settings.cache_dir / "bucket" / "clips"
    cached.mkdir(parents=True)
    old, fresh = cached / "old.mp4", cached / "fresh.mp4"
    for path, age in ((old, 3 * 3600), (fresh, 60)):
        path.write_bytes(b"x" * 1000)
        os.utime(path, (time.time() - age, time.time() - age))
    report = prune(settings, service.open_store(settings), older_than=3600)
    assert report.removed == [old] and report.freed_bytes == 1000
    assert fresh.exists() and not old.exists()


@pytest.mark.servers
def test_store_operations_put_once_fetch_checked_and_a_missing_bucket_named_with_the_fix(s3, tmp_path):
    settings = load_settings(reelcrew_cache_dir=tmp_path / "cache")
    store = artifacts.store_for(settings)
    store.check()
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"bytes of a paid clip" * 1000)
    digest = hashlib.sha256(clip.read_bytes()).hexdigest()
    uploads = []
    store.client.meta.events.register("before-call.s3.PutObject", lambda **kw: uploads.append(kw["params"]))
    ref = artifacts.put_clip(settings, "k123", clip, digest)
    assert ref == f"s3://{s3.bucket}/studio/clips/k123.mp4" and store.exists(ref) and len(uploads) == 1
    assert artifacts.put_clip(settings, "k123", clip, digest) == ref  # a redelivered put: the object is kept
    assert len(uploads) == 1
    fetched = store.fetch(ref, digest)
    assert fetched.is_relative_to(settings.cache_dir) and fetched.read_bytes() == clip.read_bytes()
    with pytest.raises(artifacts.ArtifactError, match="does not match the ledger's checksum"):
        store.fetch(ref, "0" * 64)
    assert [p.name for p in fetched.parent.iterdir()] == ["k123.mp4"]  # no temp file left behind
    store.delete(ref)
    assert not store.exists(ref)

    missing = load_settings(reelcrew_artifacts="s3://no-such-bucket-here/x", reelcrew_cache_dir=tmp_path / "cache")
    with pytest.raises(artifacts.ArtifactError) as refused:
        artifacts.check(missing)
    assert "no-such-bucket-here" in refused.value.problem and "does not exist" in refused.value.problem
    assert "aws s3 mb s3://no-such-bucket-here" in (refused.value.fix or "")
