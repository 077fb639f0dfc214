"""What a batch of QoS 1 verdicts waits for its PUBACKs, with and without quick TCP ACKs.

    .venv/bin/python benchmarks/mqtt_batch.py [--url mqtt://127.0.0.1:1883] [--repeats 100]

An inference worker publishes a batch's final verdicts together and waits for the broker's
PUBACKs before it takes the next batch (``inspection/mqtt.py``). Side by side in one run, on the
same broker: paho's plain client and Loupe's ``QuickAckClient``, batches of 1, 8 and 16 messages.
Prints a table (median and p95 ms per batch), then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inspection.mqtt import QuickAckClient


def connect(client_class: type[mqtt.Client], url: str) -> mqtt.Client:
    parsed = urlparse(url)
    client = client_class(CallbackAPIVersion.VERSION2, client_id=f"loupe-bench-{uuid.uuid4().hex[:8]}")
    client.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883)
    client.loop_start()
    return client


def batch_ms(client: mqtt.Client, size: int, repeats: int) -> list[float]:
    payload = json.dumps({"verdict_id": 1, "part_serial": "SN-000001", "verdict": "pass"}).encode()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        infos = [client.publish(f"loupe-bench/mqtt-batch/{n}", payload, qos=1) for n in range(size)]
        for info in infos:
            info.wait_for_publish(timeout=5)
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)  # the next batch comes after some inference, not back to back
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    print(f"MQTT batch publish, QoS 1, broker {args.url}, {platform.machine()}, {args.repeats} batches each")
    print(f"{'client':<18}{'batch':>6}{'median ms':>11}{'p95 ms':>9}")
    headline: dict[str, float] = {}
    for name, client_class in (("paho plain", mqtt.Client), ("QuickAckClient", QuickAckClient)):
        client = connect(client_class, args.url)
        for size in (1, 8, 16):
            times = batch_ms(client, size, args.repeats)
            median, p95 = float(np.median(times)), float(np.percentile(times, 95))
            print(f"{name:<18}{size:>6}{median:>11.2f}{p95:>9.2f}")
            if size == 8:
                key = "plain" if client_class is mqtt.Client else "quickack"
                headline[f"{key}_b8_median_ms"] = round(median, 2)
                headline[f"{key}_b8_p95_ms"] = round(p95, 2)
        client.loop_stop()
        client.disconnect()
    print(json.dumps(headline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
