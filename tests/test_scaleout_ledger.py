"""Scale-out pieces that need no worker: the dead-letter table (ledger schema 11) and the rate gate in Redis."""

import os
import subprocess
import sys

import pytest

from reelcrew.store import Store


def ledger(tmp_path, name="ledger.db"):
    store = Store(f"sqlite:///{tmp_path / name}")
    store.migrate()
    return store


def test_a_dead_letter_is_listed_until_retried_and_retried_once(tmp_path):
    store = ledger(tmp_path)
    first = store.add_dead_letter("reelcrew.write", {"production_id": "p1"}, "writer exploded", 4, "p1")
    second = store.add_dead_letter("reelcrew.render", {"production_id": "p2"}, "ffmpeg died", 2, "p2")
    assert [d["id"] for d in store.dead_letters()] == [second, first]
    assert store.dead_letters()[1]["arguments"] == {"production_id": "p1"}
    assert store.take_dead_letter(first)["task"] == "reelcrew.write"
    assert store.take_dead_letter(first) is None  # two operators retrying at once re-queue it once
    assert [d["id"] for d in store.dead_letters()] == [second]
    assert {d["id"] for d in store.dead_letters(include_retried=True)} == {first, second}
    assert any(e["kind"] == "dead_letter" for e in store.recent_events("p1"))


@pytest.mark.servers
def test_the_rate_gate_in_redis_is_one_rate_for_every_machine(tmp_path, redis):
    from reelcrew.video.quota import RateGate

    # two "machines": each its own SQLite ledger, sharing only the broker's Redis
    here = RateGate(ledger(tmp_path, "a.db"), rpm=2, window=60.0, broker=redis.url)
    there = RateGate(ledger(tmp_path, "b.db"), rpm=2, window=60.0, broker=redis.url)
    here.acquire()
    here.acquire()
    assert not there.limiter.try_acquire(there.item, blocking=False)
    assert redis.keys("reelcrew:rate:*")


def test_an_unreachable_broker_is_a_clear_error_with_the_password_masked(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "REELCREW_BROKER": "redis://:hunter22@127.0.0.1:1/0"}
    result = subprocess.run([sys.executable, "-m", "reelcrew", "run", "--mock", "--topic", "tea", "--yes"], env=env,
                            capture_output=True, text=True, timeout=120, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "cannot reach the broker redis://:**@127.0.0.1:1/0" in result.stderr and "hunter22" not in result.stderr
    assert "REELCREW_BROKER" in result.stderr



@pytest.mark.servers
def test_the_rate_gate_in_redis_survives_a_redis_restart(tmp_path, redis):
    """A restarted Redis forgets the bucket's Lua script: the gate loads it again instead of failing the clip."""
    from reelcrew.video.quota import RateGate

    gate = RateGate(ledger(tmp_path), rpm=100, window=60.0, broker=redis.url)
    gate.acquire()
    redis.restart()
    gate.acquire()
    assert redis.keys("reelcrew:rate:*")
