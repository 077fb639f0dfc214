"""One env-driven settings module; production refuses to start on missing or unsafe values."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from loupe.settings import celery_broker_url, redis_url_with_db

REPO = Path(__file__).resolve().parents[2]
GOOD_KEY = "k8J2-vQz7_pXr4LmN9sT1wYb6cHdFgA3eU5iO0oPqRsTuVwXyZ12"

PRODUCTION = {
    "LOUPE_ENV": "production",
    "SECRET_KEY": GOOD_KEY,
    "DATABASE_URL": "postgres://loupe:pw@db.internal:5432/loupe",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "ALLOWED_HOSTS": "loupe.plant.example",
    "CSRF_TRUSTED_ORIGINS": "https://loupe.plant.example",
    "DEBUG": "false",
}


def run_django(env_changes: Mapping[str, str | None], code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in PRODUCTION and key != "REDIS_URL"}
    env["LOUPE_VAR_DIR"] = str(tmp_path)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


LOAD = "import os; os.environ['DJANGO_SETTINGS_MODULE']='loupe.settings'; import django; django.setup(); print('ok')"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "django-insecure-" + "a1b2c3d4e5" * 5}, "SECRET_KEY is unsafe"),
        ({"SECRET_KEY": "short-key"}, "SECRET_KEY is unsafe"),
        ({"SECRET_KEY": "a" * 60}, "SECRET_KEY is unsafe"),
        ({"DATABASE_URL": None}, "DATABASE_URL is not set"),
        ({"DATABASE_URL": "sqlite:////tmp/x.sqlite3"}, "DATABASE_URL must be a postgres://"),
        ({"REDIS_URL": None}, "REDIS_URL is not set"),
        ({"REDIS_URL": "http://redis:6379"}, "REDIS_URL='http://redis:6379' must start with"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS must list"),
        ({"ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS must list"),
        ({"DEBUG": "true"}, "DEBUG=true with LOUPE_ENV=production"),
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"CSRF_TRUSTED_ORIGINS": "https://*.example"}, "CSRF_TRUSTED_ORIGINS entry"),
        ({"MEDIA_STORAGE_URL": "ftp://files/x"}, "MEDIA_STORAGE_URL"),
    ],
)
def test_production_refuses_to_start_and_names_the_variable(
    change: dict[str, str | None], named: str, tmp_path: Path
) -> None:
    result = run_django({**PRODUCTION, **change}, LOAD, tmp_path)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr


def test_a_complete_production_configuration_passes_the_deploy_checks(tmp_path: Path) -> None:
    result = run_django(
        PRODUCTION,
        LOAD.replace("; print('ok')", "") + "; from django.core.management import call_command; "
        "call_command('check', deploy=True, fail_level='WARNING'); print('ok')",
        tmp_path,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_without_configuration_each_install_gets_its_own_private_secret_key(tmp_path: Path) -> None:
    read_key = LOAD.replace("print('ok')", "from django.conf import settings; print(settings.SECRET_KEY)")
    first = run_django({}, read_key, tmp_path / "a").stdout.strip()
    again = run_django({}, read_key, tmp_path / "a").stdout.strip()
    other = run_django({}, read_key, tmp_path / "b").stdout.strip()

    assert first == again  # stable for one install: sessions survive a restart
    assert first != other and len(first) >= 50
    assert (tmp_path / "a" / "secret_key").stat().st_mode & 0o077 == 0


def test_without_configuration_it_uses_sqlite_embedded_redis_and_local_media(tmp_path: Path) -> None:
    code = LOAD.replace(
        "print('ok')",
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.EMBEDDED_REDIS, s.REDIS_URL, s.MEDIA_ROOT)",
    )
    engine, embedded, redis_url, media = run_django({}, code, tmp_path).stdout.split()

    assert engine == "django.db.backends.sqlite3"
    assert embedded == "True" and redis_url == f"unix://{tmp_path}/redis.sock"
    assert media == str(tmp_path / "media")


@pytest.mark.parametrize(
    ("url", "offset", "expected"),
    [
        ("redis://r:6379/0", 0, "redis://r:6379/0"),
        ("redis://r:6379/0", 1, "redis://r:6379/1"),
        ("redis://:pw@r:6379/4", 2, "redis://:pw@r:6379/6"),
        ("redis://r:6379", 2, "redis://r:6379/2"),
        ("unix:///var/run/redis.sock", 1, "unix:///var/run/redis.sock?db=1"),
        ("unix:///var/run/redis.sock?db=3", 2, "unix:///var/run/redis.sock?db=5"),
    ],
)
def test_broker_cache_and_channel_layer_use_separate_redis_databases(url: str, offset: int, expected: str) -> None:
    assert redis_url_with_db(url, offset) == expected


def test_a_unix_socket_broker_url_is_spelled_the_way_kombu_reads_it() -> None:
    assert celery_broker_url("unix:///v/redis.sock?db=0") == "redis+socket:///v/redis.sock?virtual_host=0"
    assert celery_broker_url("redis://r:6379/0") == "redis://r:6379/0"


def test_the_celery_app_only_accepts_json_and_acks_late() -> None:
    from django.conf import settings

    from inspection.tasks import inspection_run_task

    assert settings.CELERY_ACCEPT_CONTENT == ["json"]
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert inspection_run_task.acks_late and inspection_run_task.reject_on_worker_lost
    assert inspection_run_task.queue == "inference"


def test_every_periodic_job_expires_after_its_interval_so_runs_do_not_pile_up() -> None:
    from django.conf import settings

    schedule: dict[str, dict[str, Any]] = settings.CELERY_BEAT_SCHEDULE

    assert len(schedule) >= 6
    assert all(entry["options"]["expires"] == entry["schedule"] for entry in schedule.values())


def test_every_periodic_job_names_a_task_the_workers_know() -> None:
    from django.conf import settings

    from loupe.celery import app

    app.loader.import_default_modules()  # what a worker imports at start (autodiscovery)
    scheduled: set[str] = {str(entry["task"]) for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    assert "annotation.sweep_masks" in scheduled
    assert scheduled <= set(app.tasks), sorted(scheduled - set(app.tasks))
