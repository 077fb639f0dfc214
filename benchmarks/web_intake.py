"""What a station's post costs the web process: Django's stock ASGI handler against Loupe's
(``loupe.asgi.SyncViewsASGIHandler``: middleware chain and view in one thread hop).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loupe_web REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python benchmarks/web_intake.py [--posts 600] [--rounds 4]

With a postgres:// URL the database is dropped and created afresh. Each round starts one
uvicorn process per handler in turn (same code, settings and database; no Celery worker: the
queued inference tasks are dropped between rounds) and posts ``--posts`` parts from 4 threads
after 40 warm-up posts; the CPU time of the uvicorn process is read before and after. Prints one
row per round and handler, then one JSON line of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

HANDLERS = {
    "django stock": ["django.core.asgi:get_asgi_application", "--factory"],
    "loupe": ["loupe.asgi:application"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="loupe-web-"))
    os.environ["LOUPE_VAR_DIR"] = str(var)
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loupe.settings")
    os.environ["MQTT_URL"] = ""
    database_url = os.environ.setdefault("DATABASE_URL", f"sqlite:///{var}/web.sqlite3")
    import loop  # the loop benchmark's helpers

    if database_url.startswith("postgres"):
        loop.fresh_postgres(database_url)
    embedded = None
    if not os.environ.get("REDIS_URL"):
        from workers.embedded_redis import start_embedded_redis

        embedded = start_embedded_redis(var / "redis.sock")
        os.environ["REDIS_URL"] = f"unix://{var}/redis.sock"

    import django

    django.setup()
    import psutil
    import redis
    import requests
    from django.core.management import call_command

    from inspection.services import project_create, station_create, station_token_issue

    call_command("migrate", verbosity=0)
    project = project_create(name="Web bench", defect_classes=["scratch"])
    station = station_create(project=project, line_name="Line 1", station_name="Camera 1")
    _, token = station_token_issue(station=station)
    images = loop.posted_images()

    def measure(handler: str, offset: int) -> float:
        port = loop.free_port()
        command = [sys.executable, "-m", "uvicorn", *HANDLERS[handler], "--host", "127.0.0.1", "--port", str(port)]
        server = subprocess.Popen(
            [*command, "--log-level", "warning", "--no-access-log"],
            cwd=REPO,
            env=os.environ.copy(),
        )
        try:
            base = f"http://127.0.0.1:{port}"
            loop.wait_http(f"{base}/")
            local = threading.local()

            def post(index: int) -> None:
                if not hasattr(local, "session"):
                    local.session = requests.Session()
                response = local.session.post(
                    f"{base}/api/v1/inspections",
                    headers={"Authorization": f"Station {token}"},
                    data={"part_serial": f"WEB-{index:08d}"},
                    files={"image": ("p.jpg", images[index % len(images)], "image/jpeg")},
                    timeout=30,
                )
                response.raise_for_status()

            with ThreadPoolExecutor(4) as pool:
                list(pool.map(post, range(offset, offset + 40)))
            process = psutil.Process(server.pid)
            before = float(sum(process.cpu_times()[:2]))
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(post, range(offset + 40, offset + 40 + args.posts)))
            spent = float(sum(process.cpu_times()[:2])) - before
            return spent * 1000 / int(args.posts)
        finally:
            server.terminate()
            server.wait()
            redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()

    print(f"Web intake: {args.posts} posts x {args.rounds} rounds per handler, 4 posting threads, "
          f"{database_url.split(':')[0]}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}")  # fmt: skip
    print(f"{'round':>5}  {'handler':<14}{'web CPU ms per post':>20}")
    results: dict[str, list[float]] = {name: [] for name in HANDLERS}
    offset = 0
    for round_ in range(1, args.rounds + 1):
        for handler in HANDLERS:
            offset += 1_000_000
            results[handler].append(measure(handler, offset))
            print(f"{round_:>5}  {handler:<14}{results[handler][-1]:>20.2f}", flush=True)
    stock, loupe = statistics.median(results["django stock"]), statistics.median(results["loupe"])
    print(f"{'median':>5}  {'django stock':<14}{stock:>20.2f}")
    print(f"{'median':>5}  {'loupe':<14}{loupe:>20.2f}")
    print(json.dumps({"stock_cpu_ms_per_post": round(stock, 2), "loupe_cpu_ms_per_post": round(loupe, 2)}))
    if embedded is not None:
        embedded.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
