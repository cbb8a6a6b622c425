"""The test harness's own Redis (tests/servers.py): started unprivileged on 127.0.0.1, restartable."""

import pytest

pytestmark = pytest.mark.servers


def test_redis_answers_and_survives_a_restart_on_the_same_port(redis):
    import redis as redis_client

    client = redis_client.Redis.from_url(redis.url)
    client.set("k", "v")
    assert client.get("k") == b"v"
    port = redis.port
    redis.restart()
    assert redis.port == port and redis.ping()
    assert client.get("k") is None  # no persistence: a restart loses what the broker held
