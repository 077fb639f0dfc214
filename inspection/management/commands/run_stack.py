"""Run every process of a Loupe box in the foreground: the embedded Redis (when REDIS_URL is
unset), a Celery inference worker, a Celery training worker, the ASGI server and, with
``--demo``, the line simulator. Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from workers.embedded_redis import start_embedded_redis


class Command(BaseCommand):
    help = "Start Redis (embedded default), Celery workers, the ASGI server and optionally the demo line."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--demo", action="store_true", help="also run the line simulator")
        parser.add_argument("--inference-concurrency", type=int, default=2)

    def handle(self, *args: Any, **options: Any) -> None:
        children: list[tuple[str, subprocess.Popen[bytes]]] = []
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        python = sys.executable
        try:
            if settings.EMBEDDED_REDIS:
                children.append(("redis", start_embedded_redis(settings.EMBEDDED_REDIS_SOCKET)))
                self.stdout.write(f"embedded redis on {settings.EMBEDDED_REDIS_SOCKET}")

            # Own sessions: the terminal's Ctrl-C reaches only this supervisor, which then
            # stops the children in order (server first, workers next, Redis last).
            # Idle OpenMP threads must not spin: on a small box they starve the other processes.
            env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}

            def spawn(name: str, argv: list[str]) -> None:
                children.append((name, subprocess.Popen(argv, start_new_session=True, env=env)))

            # Jobs that finish: one ending well stops nothing; one failing is reported.
            oneshots: set[str] = set()
            finished: set[str] = set()

            host, port = options["host"], str(options["port"])
            celery = [python, "-m", "celery", "-A", "loupe", "worker", "--loglevel", "INFO"]
            celery += ["--without-gossip", "--without-mingle"]
            concurrency = str(options["inference_concurrency"])
            spawn("worker-inference", [*celery, "-Q", "inference,default", "-c", concurrency, "-n", "inference@%h"])
            # Training has its own worker process: a long job never holds an inference slot.
            spawn("worker-training", [*celery, "-Q", "training", "-c", "1", "-n", "training@%h"])
            # The periodic jobs (lease expiry, stale parts, webhook deliveries, retention, recalibration).
            schedule = str(Path(settings.VAR_DIR) / "celerybeat-schedule")
            spawn("beat", [python, "-m", "celery", "-A", "loupe", "beat", "--loglevel", "INFO", "-s", schedule])
            uvicorn = [python, "-m", "uvicorn", "loupe.asgi:application", "--host", host, "--port", port]
            spawn("web", [*uvicorn, "--ws-max-size", "65536", "--no-server-header"])
            if options["demo"]:
                url = f"http://{host}:{port}"
                # A reviewer stands in for people on parts nobody took within a minute.
                spawn("line-simulator", [python, "manage.py", "simulate_line", "--url", url, "--review-after", "60"])
                # The demo's first model, trained and deployed while the line runs (once).
                spawn("demo-model", [python, "manage.py", "demo_model"])
                oneshots.add("demo-model")
            self.stdout.write(
                self.style.SUCCESS(f"Loupe is running on http://{options['host']}:{options['port']}/ (Ctrl-C stops it)")
            )
            while not stopping:
                for name, process in children:
                    if name in oneshots:
                        if process.poll() is not None and name not in finished:
                            finished.add(name)
                            if process.returncode:
                                self.stderr.write(f"{name} failed with status {process.returncode}")
                        continue
                    if process.poll() is not None:
                        self.stderr.write(f"{name} exited with status {process.returncode}; stopping everything")
                        stopping = True
                        break
                time.sleep(0.5)
        finally:
            for _name, process in reversed(children):
                if process.poll() is None:
                    process.terminate()
            deadline = time.monotonic() + 15
            for _name, process in reversed(children):
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            self.stdout.write("all processes stopped")
