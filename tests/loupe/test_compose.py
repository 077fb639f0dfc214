"""docker-compose.yml, read against the settings and the Makefile (no Docker engine runs here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
LOUPE_SERVICES = ["migrate", "web", "worker-cpu", "worker-default", "worker-gpu", "beat"]


def test_compose_runs_every_process_of_the_production_box() -> None:
    assert {"postgres", "redis", "web", "worker-cpu", "worker-default", "worker-gpu", "beat"} <= set(SERVICES)
    for name in ["postgres", "redis", "web", "worker-cpu", "worker-default", "worker-gpu"]:
        assert "healthcheck" in SERVICES[name], name
    assert set(COMPOSE["volumes"]) == {"postgres-data", "redis-data", "loupe-data"}


def test_workers_cover_the_inference_training_and_default_queues_separately() -> None:
    def queues(service: str) -> set[str]:
        command = SERVICES[service]["command"]
        return set(command[command.index("-Q") + 1].split(","))

    # Each queue has its own workers: housekeeping never holds an inference slot.
    assert queues("worker-cpu") == {"inference"}
    assert queues("worker-default") == {"default"}
    assert queues("worker-gpu") == {"training"}


def test_the_gpu_worker_reserves_an_nvidia_device_and_installs_the_gpu_extra() -> None:
    gpu = SERVICES["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "gpu" in gpu["build"]["args"]["EXTRAS"]


def test_web_serves_the_same_asgi_app_as_the_makefile() -> None:
    run_stack = (REPO / "inspection/management/commands/run_stack.py").read_text()
    assert "loupe.asgi:application" in SERVICES["web"]["command"]
    assert '"loupe.asgi:application"' in run_stack
    assert "run_stack --demo" in (REPO / "Makefile").read_text()


def test_redis_never_evicts_queued_tasks() -> None:
    assert "noeviction" in SERVICES["redis"]["command"]


def _compose_env() -> dict[str, str]:
    """The loupe services' environment with compose's ${VAR:?...} placeholders filled in."""
    raw = SERVICES["web"]["environment"]
    fill = {
        "SECRET_KEY": "k8J2-vQz7_pXr4LmN9sT1wYb6cHdFgA3eU5iO0oPqRsTuVwXyZ12",
        "POSTGRES_PASSWORD": "pw",
        "ALLOWED_HOSTS": "loupe.plant.example",
        "CSRF_TRUSTED_ORIGINS": "https://loupe.plant.example",
    }

    def substitute(value: str) -> str:
        return re.sub(r"\$\{(\w+)(?::[?-]([^}]*))?\}", lambda m: fill.get(m.group(1), m.group(2) or ""), str(value))

    return {key: substitute(value) for key, value in raw.items()}


def test_every_variable_compose_sets_is_read_by_the_settings_and_documented() -> None:
    settings_source = (REPO / "loupe/settings.py").read_text()
    readme = (REPO / "README.md").read_text()
    for name in _compose_env():
        if name.startswith("AWS_"):
            continue  # read by boto3 itself, documented with MEDIA_STORAGE_URL
        assert f'"{name}"' in settings_source, name
        assert f"`{name}`" in readme, name


def test_the_compose_environment_passes_the_production_deploy_checks(tmp_path: Path) -> None:
    # One environment (a YAML anchor) is shared by every Loupe service.
    assert all(SERVICES[name]["environment"] == SERVICES["web"]["environment"] for name in LOUPE_SERVICES)
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "LOUPE_ENV"}}
    env.update(_compose_env())
    env["LOUPE_VAR_DIR"] = str(tmp_path)
    env["MEDIA_STORAGE_URL"] = f"file://{tmp_path}/media"
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='loupe.settings'; django.setup(); "
        "from django.core.management import call_command; call_command('check', deploy=True, fail_level='WARNING')"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr[-2000:]


def test_every_variable_the_settings_read_is_in_the_readme_table() -> None:
    settings_source = (REPO / "loupe/settings.py").read_text()
    names = set(re.findall(r'(?:env_str|env_bool|env_int|env_list|required)\(\s*"([A-Z_]+)"', settings_source))
    readme = (REPO / "README.md").read_text()

    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "MEDIA_STORAGE_URL"} <= names
    assert [name for name in sorted(names) if f"| `{name}`" not in readme] == []


def test_every_loupe_service_reads_the_optional_env_file_for_the_readmes_settings() -> None:
    for name in LOUPE_SERVICES:
        assert SERVICES[name]["env_file"] == [{"path": ".env", "required": False}], name


def test_the_web_port_is_published_on_loopback_only_since_forwarded_headers_are_trusted() -> None:
    web = SERVICES["web"]
    assert "--proxy-headers" in web["command"]
    assert web["ports"] == ["127.0.0.1:8000:8000"]


def test_the_embedded_stack_runs_beat_like_production() -> None:
    # The reconcilers (leases, stale parts, webhook deliveries, retention) run from beat.
    run_stack = (REPO / "inspection/management/commands/run_stack.py").read_text()
    assert SERVICES["beat"]["command"][:4] == ["celery", "-A", "loupe", "beat"]
    assert '"loupe", "beat"' in run_stack
