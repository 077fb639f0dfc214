"""What a push to the reviewers' websocket group costs a Celery worker's thread.

    REDIS_URL=redis://127.0.0.1:6379/4 .venv/bin/python benchmarks/channel_push.py [--sends 300]

Side by side in one process (no event loop of its own, like a Celery worker): channels'
``async_to_sync(layer.group_send)``, which starts an event loop per call (and channels_redis a
Redis connection per loop), against ``inspection.channel_layer.group_send`` (one long-lived
background loop). Without REDIS_URL an embedded Redis is started. Prints CPU and wall ms per
send, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=300)
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="loupe-push-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loupe.settings")
    os.environ.setdefault("LOUPE_VAR_DIR", str(var))
    embedded = None
    if not os.environ.get("REDIS_URL"):
        from workers.embedded_redis import start_embedded_redis

        embedded = start_embedded_redis(var / "redis.sock")
        os.environ["REDIS_URL"] = f"unix://{var}/redis.sock"
    import django

    django.setup()
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from inspection.channel_layer import group_send

    layer = get_channel_layer()
    message = {"type": "review.event", "event": "review.item.added", "payload": {"id": 1}}

    def per_call_loop() -> None:
        async_to_sync(layer.group_send)("bench-push", message)

    def background_loop() -> None:
        group_send("bench-push", message)

    def measure(send: Callable[[], None]) -> tuple[float, float]:
        for _ in range(10):
            send()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(args.sends):
            send()
        return (
            (time.process_time() - cpu) * 1000 / args.sends,
            (time.perf_counter() - wall) * 1000 / args.sends,
        )

    print(f"Channel-layer push from a thread without an event loop, {args.sends} sends each, "
          f"{platform.machine()}, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'sender':<34}{'CPU ms/send':>12}{'wall ms/send':>14}")
    results = {}
    for name, send in (
        ("async_to_sync(layer.group_send)", per_call_loop),
        ("channel_layer.group_send", background_loop),
    ):
        cpu, wall = measure(send)
        results[name] = cpu
        print(f"{name:<34}{cpu:>12.3f}{wall:>14.3f}")
    print(json.dumps({"per_call_loop_cpu_ms": round(results["async_to_sync(layer.group_send)"], 3),
                      "background_loop_cpu_ms": round(results["channel_layer.group_send"], 3)}))  # fmt: skip
    if embedded is not None:
        embedded.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
