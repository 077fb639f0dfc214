"""What an inference worker pays per part to learn which models are deployed, as the registry
grows: the deployed versions read with the serving fields only (as ``inspection.serving``
does) and with every field (as it did before 2026-11-27), side by side, for three deployed
models trained on 0 and on 20,000 labelled images.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loupe_registry_bench .venv/bin/python benchmarks/serving_registry.py

With a postgres:// URL the database is dropped and created afresh. Prints one table, then one
JSON line: {"serving_fields_ms", "all_fields_ms"} at 20,000 labelled images.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    os.environ["LOUPE_VAR_DIR"] = tempfile.mkdtemp(prefix="loupe-registry-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loupe.settings")
    os.environ.setdefault("DEBUG", "false")
    database_url = os.environ.get("DATABASE_URL", f"sqlite:///{os.environ['LOUPE_VAR_DIR']}/bench.sqlite3")
    os.environ["DATABASE_URL"] = database_url
    if database_url.startswith("postgres"):
        import psycopg

        parsed = urlparse(database_url)
        with psycopg.connect(parsed._replace(path="/postgres").geturl(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{parsed.path.lstrip("/")}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{parsed.path.lstrip("/")}"')
    import django

    django.setup()
    from django.core.management import call_command

    from inspection import serving
    from inspection.models import ModelVersion
    from inspection.services import project_create

    call_command("migrate", verbosity=0)

    def all_fields(project_id: int) -> dict[str, ModelVersion]:
        rows = ModelVersion.objects.filter(project_id=project_id, status=ModelVersion.Status.DEPLOYED)
        return {row.kind: row for row in rows}

    def timed(read: Callable[[int], object], project_id: int, repeat: int = 200) -> tuple[float, float]:
        for _ in range(5):
            read(project_id)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(repeat):
            read(project_id)
        return (time.perf_counter() - wall) / repeat * 1000, (time.process_time() - cpu) / repeat * 1000

    print(f"Deployed-version read per part, 3 deployed models, {django.db.connection.vendor}, {os.cpu_count()} CPUs")
    print(f"{'labelled images':>16} {'read':>16} {'ms per part':>12} {'of it CPU':>10}")
    headline: dict[str, float] = {}
    for images in (0, 20_000):
        project = project_create(name=f"Registry {images}", defect_classes=["scratch"])
        for kind in ("classifier", "anomaly", "segmenter"):
            ModelVersion.objects.create(
                project=project, kind=kind, status="deployed", artifacts={"model.onnx": "0" * 64},
                training_data={"annotations": list(range(images)), "images": list(range(images)), "seed": 0},
                progress={"history": [{"epoch": epoch, "loss": 0.1, "metric": 0.9} for epoch in range(40)]},
            )  # fmt: skip
        readers: dict[str, Callable[[int], object]] = {
            "serving fields": lambda project_id: serving.deployed_versions(project_id=project_id),
            "all fields": all_fields,
        }
        for label, read in readers.items():
            wall, cpu = timed(read, project.pk)
            print(f"{images:>16,} {label:>16} {wall:>12.2f} {cpu:>10.2f}")
            if images:
                headline["serving_fields_ms" if label == "serving fields" else "all_fields_ms"] = round(wall, 2)
    print(json.dumps(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
