"""The embedded Redis of the zero-configuration default."""

from __future__ import annotations

from pathlib import Path

import redis

from workers.embedded_redis import start_embedded_redis


def test_the_embedded_redis_never_evicts_queued_tasks_and_keeps_nothing_on_disk(tmp_path: Path) -> None:
    server = start_embedded_redis(tmp_path / "redis.sock")
    try:
        client = redis.Redis(unix_socket_path=str(tmp_path / "redis.sock"))

        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("port") == {"port": "0"}  # unix socket only: nothing listens on TCP
    finally:
        server.terminate()
        server.wait(timeout=10)
