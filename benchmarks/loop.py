"""The whole loop at line speed: stations post parts over HTTP, Celery workers run the deployed
224x224 classifier and route each part, a connected reviewer's websocket receives the parts
sent to people, and every final verdict is published to MQTT.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loupe_bench REDIS_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python benchmarks/loop.py --parts 1000

With a postgres:// URL the database is dropped and created afresh. Prints one table, then one
JSON line: {"parts_per_minute", "p50_ms", "p99_ms", "ws_push_p95_ms", "mqtt_p95_ms"}.
Latency is measured on the server clock from the post being received to the model's routing
committed (Inspection.received_at -> finished_at); pushes from that commit to the client.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fresh_postgres(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


CPU_GROUPS = ("web", "workers", "postgres", "redis", "mosquitto", "client")


def cpu_seconds(stack: Sequence[subprocess.Popen[bytes]]) -> dict[str, float]:
    """CPU seconds (user + system) spent so far by each group of processes on this machine:
    the web server and the Celery workers (each with its children), PostgreSQL's backends,
    Redis, Mosquitto, and this benchmark process (the stations' HTTP clients and the
    reviewer's websocket; on a real line they run on other machines)."""
    import psutil

    def spent(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
            return float(times.user + times.system + times.children_user + times.children_system)
        except psutil.Error:
            return 0.0

    def tree(pid: int) -> float:
        try:
            root = psutil.Process(pid)
            return spent(root) + sum(spent(child) for child in root.children(recursive=True))
        except psutil.Error:
            return 0.0

    totals = dict.fromkeys(CPU_GROUPS, 0.0)
    totals["workers"], totals["web"] = tree(stack[0].pid), tree(stack[1].pid)
    for process in psutil.process_iter(["name"]):
        name = process.info["name"] or ""
        for group, prefix in (("postgres", "postgres"), ("redis", "redis-server"), ("mosquitto", "mosquitto")):
            if name.startswith(prefix):
                totals[group] += spent(process)
    totals["client"] = spent(psutil.Process())
    return totals


def percentile(values: Sequence[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(values, q)) if values else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8, help="stations posting at once")
    parser.add_argument("--workers", type=int, default=2, help="Celery inference worker processes")
    parser.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help="parts per second for the latency phase: the goal, 3,000 a minute (0: 60%% of the throughput found)",
    )
    parser.add_argument(
        "--int8", action="store_true", help="then switch the classifier to its INT8 model and saturate again"
    )
    parser.add_argument("--mqtt-url", default=os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"))
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "loop-latest.txt")
    args = parser.parse_args(argv)

    var = Path(tempfile.mkdtemp(prefix="loupe-loop-"))
    os.environ["LOUPE_VAR_DIR"] = str(var)
    # Measured as deployed: DEBUG off (on, every query is also logged in memory: ~18 % slower).
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loupe.settings")
    database_url = os.environ.get("DATABASE_URL", f"sqlite:///{var}/bench.sqlite3")
    os.environ["DATABASE_URL"] = database_url
    if database_url.startswith("postgres"):
        fresh_postgres(database_url)
    embedded = None
    if not os.environ.get("REDIS_URL"):
        from workers.embedded_redis import start_embedded_redis

        embedded = start_embedded_redis(var / "redis.sock")
        os.environ["REDIS_URL"] = f"unix://{var}/redis.sock"
    os.environ["MQTT_URL"] = args.mqtt_url
    os.environ["MQTT_TOPIC_PREFIX"] = "loupe-bench"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    os.environ["CSRF_TRUSTED_ORIGINS"] = base

    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command

    for url in (settings.REDIS_BROKER_URL, settings.REDIS_CACHE_URL, settings.REDIS_CHANNELS_URL):
        redis.Redis.from_url(url).flushdb()
    call_command("migrate", verbosity=0)
    lines: list[str] = []

    def log(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    project, station_token, reviewer = setup_project(var)
    processes = start_stack(port, args.workers, var)
    try:
        wait_http(f"{base}/api/v1/health")
        log(f"Loop benchmark: {args.parts} parts, {args.concurrency} posting threads, {args.workers} inference workers")
        log(f"database {urlparse(database_url).scheme}, redis {urlparse(os.environ['REDIS_URL']).scheme}, "
            f"broker {args.mqtt_url}, machine: {os.cpu_count()} CPUs")  # fmt: skip
        saturated = run_load(
            base,
            project,
            station_token,
            reviewer,
            argparse.Namespace(**{**vars(args), "rate": 0.0, "serial_offset": 0}),
            processes,
        )
        rate = args.rate or 0.6 * saturated["headline"]["parts_per_minute"] / 60
        log(f"throughput phase: {saturated['headline']}; latency phase at {rate:.1f} parts/s")
        paced = run_load(
            base,
            project,
            station_token,
            reviewer,
            argparse.Namespace(**{**vars(args), "rate": rate, "serial_offset": 500_000}),
            processes,
        )
        results: dict[str, Any] = {
            "table": [
                ("THROUGHPUT (posting as fast as 8 stations can)", ""),
                *saturated["table"],
                (f"LATENCY (steady {rate:.1f} parts/s = {rate * 60:.0f} per minute)", ""),
                *paced["table"],
            ],
            "headline": {**paced["headline"], "parts_per_minute": saturated["headline"]["parts_per_minute"]},
        }
        if args.int8:
            # Same stack, same run: the deployed classifier switched to its INT8 model (the workers
            # load it on their next part). Switched in the registry directly, as setup_project
            # deploys: a deployment through the service recalibrates, and with no human-decided
            # parts here that calibration would send every part to review; both phases must route
            # with the same fixed project thresholds so that only the model's cost differs.
            from inspection.models import ModelVersion

            ModelVersion.objects.filter(project=project, kind="classifier").update(precision="int8")
            quantized = run_load(
                base,
                project,
                station_token,
                reviewer,
                argparse.Namespace(**{**vars(args), "rate": 0.0, "serial_offset": 2_000_000}),
                processes,
            )
            log(f"INT8 throughput phase: {quantized['headline']}")
            quantized_paced = run_load(
                base,
                project,
                station_token,
                reviewer,
                argparse.Namespace(**{**vars(args), "rate": rate, "serial_offset": 2_500_000}),
                processes,
            )
            log(f"INT8 latency phase: {quantized_paced['headline']}")
            results["table"] += [
                ("THROUGHPUT, INT8 classifier (same run)", ""),
                *quantized["table"],
                (f"LATENCY, INT8 classifier (steady {rate:.1f} parts/s = {rate * 60:.0f} per minute)", ""),
                *quantized_paced["table"],
            ]
            results["headline"]["parts_per_minute_int8"] = quantized["headline"]["parts_per_minute"]
            results["headline"]["p50_ms_int8"] = quantized_paced["headline"]["p50_ms"]
            results["headline"]["p99_ms_int8"] = quantized_paced["headline"]["p99_ms"]
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if embedded is not None:
            embedded.terminate()

    log("")
    log(f"{'measure':<44}{'value':>12}")
    for name, value in results["table"]:
        log(f"{name:<44}{value:>12}")
    log(json.dumps(results["headline"]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    shutil.rmtree(var, ignore_errors=True)
    return 0


def setup_project(var: Path) -> tuple[Any, str, tuple[str, str]]:
    """A project with a deployed 224 px classifier (trained briefly: speed, not accuracy, is measured)."""
    from django.contrib.auth import get_user_model

    from inspection.models import ModelVersion, Project
    from inspection.services import membership_set, project_create, station_create, station_token_issue
    from workers.ml.training import train
    from workers.ml.types import Sample
    from workers.synthetic import synthetic_part

    project = project_create(name="Loop bench", defect_classes=["scratch", "pit", "crack"])
    station = station_create(project=project, line_name="Line 1", station_name="Camera 1")
    _, token = station_token_issue(station=station)
    user = get_user_model().objects.create_user("bench-reviewer", password="bench-reviewer-pw-123")
    membership_set(project=project, user=user, role="reviewer")
    images = var / "train"
    images.mkdir()
    samples = []
    for index in range(48):
        defect = None if index % 2 else ["scratch", "pit", "crack"][index % 3]
        part = synthetic_part(index, size=256, defect=defect)
        path = images / f"{index}.png"
        part.image.save(path)
        samples.append(Sample(image_path=path, label=defect))
    version = ModelVersion.objects.create(project=project, kind="classifier", status="training")
    # The global head: the issue's "224x224 classifier" and the figures measured before the
    # patch head became the default (benchmarks/README.md compares the two heads' costs).
    result = train(kind="classifier", samples=samples, good_class="good", out_dir=version.artifact_dir,
                   hyperparameters={"head": "global", "input_size": [224, 224], "epochs": 1, "int8": True})  # fmt: skip
    # Registered as a mature plant's model would be: trained on 20,000 labelled images, with its
    # training curve, so that serving pays for whatever it reads of the registry per part.
    ModelVersion.objects.filter(pk=version.pk).update(
        status="deployed",
        artifacts=result.artifacts,
        training_data={"annotations": list(range(1, 20_001)), "images": list(range(1, 20_001)), "seed": 0},
        progress={"history": [{"epoch": epoch, "loss": 0.1, "metric": 0.9} for epoch in range(30)]},
    )
    # Route about a fifth of the parts to the reviewer so that pushes are measured too: the band
    # between the 40th and 60th percentiles of what this model says of the parts the stations
    # post (a fixed band missed them all when a one-epoch model put every part above it).
    low, high = review_band(result.artifacts, version.artifact_dir)
    Project.objects.filter(pk=project.pk).update(auto_pass_threshold=low, auto_fail_threshold=high, audit_rate=0.0)
    return project, token, ("bench-reviewer", "bench-reviewer-pw-123")


def posted_images() -> list[bytes]:
    """The JPEGs the stations post, in turn."""
    from workers.synthetic import synthetic_part

    return [synthetic_part(index, size=256).encode("JPEG") for index in range(64)]


def review_band(artifacts: dict[str, str], artifact_dir: Path) -> tuple[float, float]:
    """The 40th and 60th percentiles of the classifier's defect probability on the posted parts."""
    import io

    import numpy as np
    from PIL import Image as PILImage

    from workers.ml.inference import load_inferencer

    inferencer = load_inferencer(artifact_dir, artifacts, backend="onnx")
    pixels = [np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB")) for data in posted_images()]
    scores = [1.0 - float((p.probabilities or {}).get("good", 0.0)) for p in inferencer.predict(pixels)]
    low, high = (float(q) for q in np.percentile(scores, [40, 60]))
    return low, max(high, low + 1e-6)


def start_stack(port: int, workers: int, var: Path) -> list[subprocess.Popen[bytes]]:
    python = sys.executable
    log = (var / "stack.log").open("wb")
    common = {
        "cwd": REPO,
        "env": os.environ.copy(),
        "stdout": log,
        "stderr": subprocess.STDOUT,
        "start_new_session": True,
    }
    celery = [python, "-m", "celery", "-A", "loupe", "worker", "-Q", "inference,default", "-c", str(workers),
              "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    web = [python, "-m", "uvicorn", "loupe.asgi:application", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", "--no-access-log"]  # fmt: skip
    return [subprocess.Popen(celery, **common), subprocess.Popen(web, **common)]  # type: ignore[call-overload]


def wait_http(url: str, timeout_s: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"server did not come up at {url}")


def run_load(
    base: str,
    project: Any,
    token: str,
    reviewer: tuple[str, str],
    args: argparse.Namespace,
    stack: Sequence[subprocess.Popen[bytes]],
) -> dict[str, Any]:
    import paho.mqtt.client as mqtt
    import requests
    from paho.mqtt.enums import CallbackAPIVersion
    from websockets.sync.client import connect

    from inspection.models import Inspection, Verdict

    # The reviewer's screen.
    session = requests.Session()
    session.get(f"{base}/api/v1/auth/csrf", timeout=5)
    session.post(f"{base}/api/v1/auth/login", json={"username": reviewer[0], "password": reviewer[1]},
                 headers={"X-CSRFToken": session.cookies["csrftoken"]}, timeout=5).raise_for_status()  # fmt: skip
    pushes: dict[int, float] = {}
    socket_ = connect(f"{base.replace('http', 'ws')}/ws/review/", open_timeout=10,  # closed below
                      additional_headers={"Origin": base, "Cookie": f"sessionid={session.cookies['sessionid']}"})  # fmt: skip
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            try:
                message = json.loads(socket_.recv(timeout=0.5))
            except TimeoutError:
                continue
            except Exception:
                return
            if message["event"] == "review.item.added":
                pushes[message["payload"]["image"]["inspection"]] = time.time()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    # The line's MQTT subscriber.
    published: dict[int, float] = {}
    parsed = urlparse(args.mqtt_url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="loupe-bench-line")

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        published.setdefault(json.loads(message.payload)["verdict_id"], time.time())

    client.on_message = on_message
    client.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883)
    client.loop_start()
    client.subscribe("loupe-bench/#", qos=1)

    images = posted_images()
    headers = {"Authorization": f"Station {token}"}
    http = threading.local()

    def post(index: int) -> int:
        if not hasattr(http, "session"):
            http.session = requests.Session()
        serial = f"BENCH-{index:06d}"
        response = http.session.post(f"{base}/api/v1/inspections", headers=headers, data={"part_serial": serial},
                                     files={"image": ("p.jpg", images[index % len(images)], "image/jpeg")}, timeout=30)  # fmt: skip
        response.raise_for_status()
        return int(response.json()["id"])

    with ThreadPoolExecutor(args.concurrency) as pool:  # warm-up: sessions, model load
        list(pool.map(post, range(10**6, 10**6 + 20)))
    time.sleep(3)
    cpu_before = cpu_seconds(stack)
    started = time.time()
    offset = args.serial_offset

    def paced(index: int) -> int:
        if args.rate:  # open loop: part i leaves the line at i / rate seconds
            delay = started + index / args.rate - time.time()
            if delay > 0:
                time.sleep(delay)
        return post(offset + index)

    with ThreadPoolExecutor(args.concurrency) as pool:
        ids = list(pool.map(paced, range(args.parts)))
    posted = time.time()
    deadline = time.time() + 600
    while Inspection.objects.filter(pk__in=ids, status="done").count() < len(ids) and time.time() < deadline:
        time.sleep(0.5)
    cpu_after = cpu_seconds(stack)
    time.sleep(3)  # late pushes and PUBACKs
    stop.set()
    client.loop_stop()
    socket_.close()

    rows = [
        (pk, got, done)
        for pk, got, done in Inspection.objects.filter(pk__in=ids, status="done").values_list(
            "pk", "received_at", "finished_at"
        )
        if done is not None
    ]
    latencies = [(done - got).total_seconds() * 1000 for _, got, done in rows]
    first = min(got for _, got, _ in rows)
    last = max(done for _, _, done in rows)
    ppm = len(rows) / max((last - first).total_seconds(), 1e-9) * 60
    # Where the time goes when posting outruns routing: the web's intake, the workers' pace
    # while they share the CPUs with it, and their pace alone once the posts have stopped.
    last_post = max(got for _, got, _ in rows)
    posting_s = max((last_post - first).total_seconds(), 1e-9)
    routed_while_posting = sum(1 for _, _, done in rows if done <= last_post)
    draining_s = (last - last_post).total_seconds()
    phases = [
        ("  intake while posting, parts/min", f"{len(rows) / posting_s * 60:.0f}"),
        ("  routed while posting, parts/min", f"{routed_while_posting / posting_s * 60:.0f}"),
        (
            "  routed after posting stopped, parts/min",
            f"{(len(rows) - routed_while_posting) / draining_s * 60:.0f}" if draining_s > 1 else "n/a",
        ),
    ]
    finished = {pk: done for pk, _, done in rows}
    # How the workers grouped the parts: a part run alone has no "batch" in its latencies.
    batch_sizes = [
        int((latency or {}).get("batch", 1))
        for latency in Inspection.objects.filter(pk__in=ids).values_list("latency_ms", flat=True)
    ]
    ws = [(pushes[pk] - finished[pk].timestamp()) * 1000 for pk in pushes if pk in finished]
    verdicts = dict(Verdict.objects.filter(inspection_id__in=ids, is_final=True).values_list("pk", "created_at"))
    mqtt_lat = [(published[vid] - created.timestamp()) * 1000 for vid, created in verdicts.items() if vid in published]

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    # Where the 2 cores went, per routed part (includes up to 0.5 s of polling after the last).
    cpu_ms = {group: (cpu_after[group] - cpu_before[group]) * 1000 / max(len(rows), 1) for group in CPU_GROUPS}
    cpu_rows = [(f"  CPU ms per part: {group}", f"{cpu_ms[group]:.1f}") for group in CPU_GROUPS]

    table = [
        ("parts posted", str(len(ids))),
        ("parts routed (done)", str(len(rows))),
        ("posting wall time, s", f"{posted - started:.1f}"),
        ("parts per minute (first receipt to last route)", f"{ppm:.0f}"),
        *phases,
        ("post -> routed p50, ms", fmt(percentile(latencies, 50))),
        ("post -> routed p95, ms", fmt(percentile(latencies, 95))),
        ("post -> routed p99, ms", fmt(percentile(latencies, 99))),
        (
            "parts run in a batch of several, %",
            f"{100 * sum(size > 1 for size in batch_sizes) / max(len(batch_sizes), 1):.0f}",
        ),
        ("mean batch a part ran in", f"{sum(batch_sizes) / max(len(batch_sizes), 1):.1f}"),
        ("parts pushed to the reviewer", str(len(ws))),
        ("websocket push p95 (commit -> screen), ms", fmt(percentile(ws, 95))),
        ("final verdicts published to MQTT", f"{len(mqtt_lat)}/{len(verdicts)}"),
        ("MQTT publish p95 (verdict -> subscriber), ms", fmt(percentile(mqtt_lat, 95))),
        ("CPU ms per part, all processes", f"{sum(cpu_ms.values()):.1f}"),
        *cpu_rows,
    ]
    headline = {
        "parts_per_minute": round(ppm),
        "p50_ms": round(percentile(latencies, 50) or 0, 1),
        "p99_ms": round(percentile(latencies, 99) or 0, 1),
        "ws_push_p95_ms": round(percentile(ws, 95) or 0, 1),
        "mqtt_p95_ms": round(percentile(mqtt_lat, 95) or 0, 1),
    }
    return {"table": table, "headline": headline, "_": datetime.now()}


if __name__ == "__main__":
    sys.exit(main())
