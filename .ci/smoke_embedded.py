"""Start `make demo`'s processes on the zero-configuration default (SQLite, embedded Redis,
real Celery worker), post one image as a station, see its review item, stop everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
PORT = 8765


def main() -> int:
    var = Path(tempfile.mkdtemp(prefix="loupe-smoke-"))
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "LOUPE_ENV"}}
    env["LOUPE_VAR_DIR"] = str(var)
    py = sys.executable
    for argv in (["migrate", "--noinput"], ["seed_demo"]):
        subprocess.run([py, "manage.py", *argv], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    log = (var / "stack.log").open("wb")
    stack = subprocess.Popen(
        [py, "manage.py", "run_stack", "--port", str(PORT)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{PORT}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/api/v1/health", timeout=5).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass  # still starting: the first answer can take seconds while every process boots
            time.sleep(0.5)
        else:
            raise SystemExit("server did not come up:\n" + (var / "stack.log").read_text()[-3000:])
        subprocess.run(
            [py, "manage.py", "simulate_line", "--url", base, "--count", "1", "--interval", "0"],
            cwd=REPO,
            env=env,
            check=True,
        )
        user, password = (var / "demo-credentials.txt").read_text().splitlines()[1].split()[1:]
        session = requests.Session()
        session.get(f"{base}/api/v1/auth/csrf", timeout=5)
        session.post(
            f"{base}/api/v1/auth/login",
            json={"username": user, "password": password},
            headers={"X-CSRFToken": session.cookies["csrftoken"]},
            timeout=5,
        ).raise_for_status()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            items = session.get(f"{base}/api/v1/review-items", timeout=5).json()["results"]
            if items:
                print(f"smoke ok: review item {items[0]['id']} for part {items[0]['part']['serial']}")
                if b"beat: Starting" not in (var / "stack.log").read_bytes():
                    raise SystemExit("beat did not start:\n" + (var / "stack.log").read_text()[-3000:])
                print("smoke ok: beat is running")
                return 0
            time.sleep(0.5)
        raise SystemExit("no review item appeared:\n" + (var / "stack.log").read_text()[-3000:])
    finally:
        stack.send_signal(signal.SIGINT)  # what Ctrl-C does
        stack.wait(timeout=60)
        survivors = processes_started_for(var)
        if survivors:
            print(f"processes left running after Ctrl-C: {survivors}", file=sys.stderr)
            sys.exit(1)


def processes_started_for(var: Path) -> list[int]:
    """Pids whose environment carries this smoke run's LOUPE_VAR_DIR."""
    marker = f"LOUPE_VAR_DIR={var}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


if __name__ == "__main__":
    sys.exit(main())
