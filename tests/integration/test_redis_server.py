"""The test harness's own redis-server behaves like the faults it is meant to simulate."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from tests.devkit.redis_server import RedisServer, RedisServerNotInstalled, flush_redis

pytestmark = pytest.mark.redis


@pytest.fixture
def server() -> Iterator[RedisServer]:
    # Function scope: every test here stops, pauses or kills its server.
    with RedisServer() as server:
        yield server


@pytest.mark.timeout(30)
def test_url_names_the_loopback_port(server: RedisServer) -> None:
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    client = redis.Redis.from_url(server.url, socket_timeout=1)
    assert client.ping()
    client.close()


@pytest.mark.timeout(30)
def test_data_survives_a_clean_restart_on_the_same_port(server: RedisServer) -> None:
    port = server.port
    client = server.client()
    client.set("k", "v")
    client.xadd("s", {"a": "1"})

    server.restart()

    assert server.port == port
    client = server.client()
    assert client.get("k") == "v"
    assert client.xlen("s") == 1


@pytest.mark.timeout(30)
def test_data_survives_sigkill_with_aof(server: RedisServer) -> None:
    server.client().set("k", "v")
    server.kill()
    server.start()
    assert server.client().get("k") == "v"


@pytest.mark.timeout(30)
def test_paused_server_times_out_and_recovers_on_resume(server: RedisServer) -> None:
    client = server.client(socket_timeout=0.5)
    assert client.ping()

    server.pause()
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 3

    server.resume()
    assert client.ping()


@pytest.mark.timeout(30)
def test_stop_makes_connections_fail(server: RedisServer) -> None:
    client = server.client()
    assert client.ping()
    server.stop()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    with pytest.raises(redis.ConnectionError):
        server.client().ping()


@pytest.mark.timeout(30)
def test_stop_while_paused_still_shuts_down_and_keeps_data(server: RedisServer) -> None:
    server.client().set("k", "v")
    server.pause()
    server.stop()
    assert not server.running
    server.start()
    assert server.client().get("k") == "v"


@pytest.mark.timeout(30)
def test_flush_between_tests_empties_and_revives(server: RedisServer) -> None:
    server.client().set("k", "v")
    server.stop()
    flush_redis(server)
    assert server.running
    assert server.client().dbsize() == 0


@pytest.mark.timeout(10)
def test_missing_executable_says_how_to_install() -> None:
    with pytest.raises(RedisServerNotInstalled, match="apt-get install redis-server"):
        RedisServer(executable="/nonexistent/redis-server")


@pytest.mark.timeout(30)
def test_close_removes_the_data_directory() -> None:
    server = RedisServer()
    server.start()
    directory = server.dir
    assert directory.exists()
    server.close()
    assert not directory.exists()
    assert not server.running
