"""Loaded as a pytest plugin (``-p tests.bootstrap`` in pyproject) so that it runs before
pytest-django reads the settings: the environment set here is what loupe.settings sees.

Starts an embedded Redis when REDIS_URL is unset and points LOUPE_VAR_DIR at a temporary
folder, so a test run never touches the demo's var/.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from workers.embedded_redis import start_embedded_redis

REPO = Path(__file__).resolve().parent.parent

# Tests never touch the demo's var/: media, SQLite files and the secret key live here.
TEST_VAR = Path(tempfile.mkdtemp(prefix="loupe-test-var-"))
os.environ["LOUPE_VAR_DIR"] = str(TEST_VAR)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loupe.settings")
os.environ.pop("LOUPE_ENV", None)

_embedded_redis: subprocess.Popen[bytes] | None = None
if not os.environ.get("REDIS_URL"):
    _socket = TEST_VAR / "redis.sock"
    _embedded_redis = start_embedded_redis(_socket)
    os.environ["REDIS_URL"] = f"unix://{_socket}"


def _cleanup() -> None:
    if _embedded_redis is not None and _embedded_redis.poll() is None:
        _embedded_redis.terminate()
        _embedded_redis.wait(timeout=10)
    shutil.rmtree(TEST_VAR, ignore_errors=True)


atexit.register(_cleanup)
