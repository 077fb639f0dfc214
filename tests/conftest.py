"""What the suite needs, started for real: Redis (the machine's, or an embedded one), the
database (PostgreSQL when DATABASE_URL says so, else SQLite), a Celery worker process and an
ASGI server process for the end-to-end tests.

Runs before Django is set up (pytest loads this file first), so the environment it sets
here is what loupe.settings reads.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from inspection.models import ModelVersion, Project
import redis as redis_client

from tests.bootstrap import REPO
from tests.bootstrap import TEST_VAR as _TEST_VAR


def _flush_test_redis() -> None:
    """Empty the three Redis databases this run uses (broker, cache, channels)."""
    from django.conf import settings

    for url in (settings.REDIS_BROKER_URL, settings.REDIS_CACHE_URL, settings.REDIS_CHANNELS_URL):
        redis_client.Redis.from_url(url).flushdb()


def pytest_configure(config: pytest.Config) -> None:
    import django

    django.setup()
    _flush_test_redis()


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    # Throttle counters and other cache state must not leak between tests.
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _empty_media_root() -> None:
    # Rolled-back test transactions do not remove files; start every test with none.
    from django.conf import settings

    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)
    Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)
    # Model artifact folders are named by version id, and rolled-back ids come round again.
    shutil.rmtree(Path(settings.VAR_DIR) / "models", ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _spawn(name: str, argv: list[str], env: dict[str, str]) -> ServiceProcess:
    log_path = _TEST_VAR / f"{name}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return ServiceProcess(name=name, process=process, log_path=log_path)


def _wait_for(predicate: object, service: ServiceProcess, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited early:\n{service.log()[-4000:]}")
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise RuntimeError(f"{service.name} did not become ready in {timeout_s}s:\n{service.log()[-4000:]}")


# The live stack's worker once a test has started it (session-wide), for the hooks below.
_LIVE: list[LiveStack] = []
LIVE_QUEUES = ("inference", "default", "training")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that ran on the live stack reports the tails of its worker's and web
    server's logs, so a flake on CI can be read, not guessed at."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and _LIVE and "live_stack" in getattr(item, "fixturenames", ()):
        for service in (_LIVE[0].worker, _LIVE[0].web):
            report.sections.append((f"{service.name} log (last 6,000 characters)", service.log()[-6000:]))


def _drain_live_worker(stack: LiveStack, timeout_s: float = 30) -> None:
    """Drop queued tasks and wait until the live worker runs none, so no task of this test
    reads the tables while the teardown empties them (PostgreSQL deadlocks the two)."""
    from loupe.celery import app

    with app.connection_for_write() as connection:
        for queue in LIVE_QUEUES:
            connection.default_channel.queue_purge(queue)
    inspector = app.control.inspect(destination=[stack.worker_name], timeout=2.0, limit=1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and stack.worker.process.poll() is None:
        active = inspector.active()
        if not active:
            return  # no answer: a worker that cannot answer runs nothing we could wait for
        if not any(active.values()) and not any((inspector.reserved() or {}).values()):
            return
        time.sleep(0.2)


@pytest.fixture(autouse=True)
def _no_task_outlives_its_transactional_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests on committed data that queue tasks while the live worker runs: the worker is
    idle before the database is emptied. (Set up after the database fixture, so torn down
    before it.)"""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or bool(marker and marker.kwargs.get("transaction"))
    if not transactional:
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    if _LIVE:
        _drain_live_worker(_LIVE[0])


LIVE_DRIFT_WINDOW, LIVE_DRIFT_MIN_PARTS = 12, 10


@dataclass
class LiveStack:
    """A Celery worker process and an ASGI server process on the test database."""

    base_url: str
    ws_url: str
    origin: str
    worker: ServiceProcess
    web: ServiceProcess
    env: dict[str, str]
    worker_name: str


@pytest.fixture(scope="session")
def live_stack(django_db_setup: None, django_db_blocker: object) -> Iterator[LiveStack]:
    port = _free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DATABASE_URL": _database_url(),
        "CSRF_TRUSTED_ORIGINS": origin,
        "LOUPE_WS_RECHECK_SECONDS": "1",
        # The tests' webhook receivers listen on this machine.
        "LOUPE_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        # Drift windows small enough for a test to fill (the tests' own process sets the same).
        "LOUPE_DRIFT_WINDOW": str(LIVE_DRIFT_WINDOW),
        "LOUPE_DRIFT_MIN_PARTS": str(LIVE_DRIFT_MIN_PARTS),
        "PYTHONUNBUFFERED": "1",
    }
    worker = _spawn(
        "worker",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "loupe",
            "worker",
            "-Q",
            "inference,default,training",
            "--pool",
            "prefork",
            "-c",
            "1",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"test-{port}@{socket.gethostname()}",
        ],
        env,
    )
    # The web process serves the built front end from STATIC_ROOT (WhiteNoise reads it at start).
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        env=env,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    web = _spawn(
        "web",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "loupe.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws-max-size",
            "65536",
        ],
        env,
    )
    try:
        _wait_for(lambda: " ready." in worker.log(), worker)
        _wait_for(lambda: _http_ok(f"{origin}/api/v1/health"), web)
        stack = LiveStack(
            base_url=origin,
            ws_url=f"ws://127.0.0.1:{port}",
            origin=origin,
            worker=worker,
            web=web,
            env=env,
            worker_name=f"test-{port}@{socket.gethostname()}",
        )
        _LIVE.append(stack)
        yield stack
    finally:
        _LIVE.clear()
        web.stop()
        worker.stop()


def _http_ok(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def live(live_stack: LiveStack, transactional_db: None) -> LiveStack:
    """The live stack with committed test data (rows are visible to the other processes)."""
    return live_stack


@dataclass(frozen=True)
class Trained:
    directory: Path
    artifacts: dict[str, str]
    thresholds: dict[str, Any]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Trained]:
    """Each kind trained once per run on generated parts, outside the database."""
    from tests.factories import TINY, write_dataset
    from workers.ml.artifacts import VerifiedArtifact
    from workers.ml.training import train
    from workers.ml.types import ModelKind, Sample

    root = write_dataset(tmp_path_factory.mktemp("dataset"))
    samples = []
    for image in sorted(root.glob("*/Imgs/*.jpg")):
        label = None if image.parent.parent.name == "MT_Free" else image.parent.parent.name.removeprefix("MT_")
        samples.append(Sample(image_path=image, label=label, mask_path=image.with_suffix(".png") if label else None))
    out = tmp_path_factory.mktemp("trained")
    result: dict[str, Trained] = {}
    kinds: list[ModelKind] = ["anomaly", "classifier", "segmenter"]
    for kind in kinds:
        chosen = [s for s in samples if s.label is None] if kind == "anomaly" else samples
        outcome = train(kind=kind, samples=chosen, good_class="good", out_dir=out / kind, hyperparameters=TINY[kind])
        manifest = VerifiedArtifact(out / kind, outcome.artifacts).manifest
        result[kind] = Trained(out / kind, dict(outcome.artifacts), dict(manifest.get("thresholds", {})))
    return result


@pytest.fixture
def register(trained: dict[str, Trained]) -> Callable[..., ModelVersion]:
    from inspection.models import ModelVersion

    def make(project: Project, kind: str, status: str = "ready") -> ModelVersion:
        source = trained[kind]
        version = ModelVersion.objects.create(
            project=project, kind=kind, status=status, artifacts=source.artifacts, thresholds=source.thresholds
        )
        shutil.copytree(source.directory, version.artifact_dir)
        return version

    return make


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def pool_children(worker_pid: int) -> list[int]:
    """Pids of a prefork Celery worker's pool processes."""
    out = subprocess.run(["pgrep", "-P", str(worker_pid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]
