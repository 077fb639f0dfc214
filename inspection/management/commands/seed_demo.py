"""Create (or refresh) the demo project: one user per role, one station with a token for the
line simulator, and (once) two weeks of clearly marked production history so the dashboards
have something to draw."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from inspection.models import Project, Role
from inspection.services import membership_set, project_create, station_create, station_token_issue

DEMO_PROJECT = "Demo: brushed metal plates"


class Command(BaseCommand):
    help = "Create the demo project, users (one per role, new passwords printed) and a station token."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--history-days", type=int, default=14, help="days of demo history (0: none)")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        credentials = []
        with transaction.atomic():
            project = Project.objects.filter(name=DEMO_PROJECT).first() or project_create(
                name=DEMO_PROJECT, defect_classes=["scratch", "pit", "crack"]
            )
            station = station_create(project=project, line_name="Line 1", station_name="Camera 1")
            for role in Role.values:
                username = f"demo-{role}"
                password = secrets.token_urlsafe(9)
                user, _ = User.objects.get_or_create(username=username)
                user.set_password(password)
                user.is_active = True
                user.save()
                membership_set(project=project, user=user, role=role)
                credentials.append((role, username, password))
            _, raw_token = station_token_issue(station=station, label="demo line simulator")
        token_file = settings.VAR_DIR / "demo-station-token"
        token_file.write_text(raw_token)
        token_file.chmod(0o600)
        self.stdout.write(self.style.SUCCESS(f"Demo project '{project.name}' (id {project.pk}) is ready."))
        history = seed_history(project=project, days=options["history_days"])
        if history:
            self.stdout.write(f"Added {history} parts of demo production history (serials HIST-*).")
        self.stdout.write("Sign in at http://127.0.0.1:8000/ with:")
        for role, username, password in credentials:
            self.stdout.write(f"  {role:<10} {username:<16} {password}")
        (settings.VAR_DIR / "demo-credentials.txt").write_text(
            "".join(f"{role} {username} {password}\n" for role, username, password in credentials)
        )


def seed_history(*, project: Project, days: int, parts_per_station_day: int = 120, seed: int = 7) -> int:
    """Two lines of two stations each, ``days`` of decided parts ending yesterday: mostly passed
    by the model, a few percent failed (one class more often than the others, so the Pareto
    has a shape), worse on weekends and on some stations. Written in bulk with the rollups
    rebuilt after; idempotent (skipped when history exists). Demo data only: no audit events."""
    import io
    import random
    from datetime import UTC, datetime, time, timedelta

    from inspection.imaging import normalise_image
    from inspection.models import Inspection, Part, Verdict
    from inspection.services.inspections import image_record, store_image_bytes
    from inspection.services.rollups import rollups_rebuild
    from workers.synthetic import synthetic_part

    if days <= 0 or Part.objects.filter(project=project, serial__startswith="HIST-").exists():
        return 0
    rng = random.Random(seed)  # noqa: S311  (demo data, not secrets)
    normalised = normalise_image(
        io.BytesIO(synthetic_part(1, size=128, defect=None).encode("JPEG")), max_bytes=1 << 22, max_pixels=1 << 22
    )
    key, _ = store_image_bytes(normalised)
    image = image_record(normalised, key)
    stations = [
        station_create(project=project, line_name=line, station_name=name)
        for line in ("Line 1", "Line 2")
        for name in ("Camera 1", "Camera 2")
    ]
    classes = list(project.defect_classes.order_by("id"))
    weights = [0.6, 0.3, 0.1][: len(classes)] or [1.0]
    start = datetime.combine(datetime.now(UTC).date() - timedelta(days=days), time(6), tzinfo=UTC)
    parts, inspections, verdicts = [], [], []
    for day in range(days):
        for index, station in enumerate(stations):
            fail_rate = 0.03 + 0.02 * index + (0.03 if day % 7 in (5, 6) else 0.0)  # weekend crews
            for n in range(parts_per_station_day):
                moment = start + timedelta(days=day, minutes=n * 1440 // parts_per_station_day + rng.randrange(10))
                serial = f"HIST-{day:02d}-{station.pk}-{n:04d}"
                failed = rng.random() < fail_rate
                parts.append(Part(project=project, serial=serial, sku=rng.choice(["PLATE-A", "PLATE-B"])))
                inspections.append((serial, station, moment))
                verdicts.append((serial, failed, rng.choices(classes, weights)[0] if failed else None))
    with transaction.atomic():
        Part.objects.bulk_create(parts, batch_size=2000)
        by_serial = dict(Part.objects.filter(project=project, serial__startswith="HIST-").values_list("serial", "pk"))
        Inspection.objects.bulk_create(
            [
                Inspection(
                    project=project,
                    part_id=by_serial[serial],
                    station=station,
                    image=image,
                    captured_at=moment,
                    status=Inspection.Status.DONE,
                    model_version="demo-history",
                    finished_at=moment,
                )
                for serial, station, moment in inspections
            ],
            batch_size=2000,
        )
        inspection_of = dict(
            Inspection.objects.filter(project=project, part__serial__startswith="HIST-").values_list("part_id", "pk")
        )
        Verdict.objects.bulk_create(
            [
                Verdict(
                    project=project,
                    part_id=by_serial[serial],
                    inspection_id=inspection_of[by_serial[serial]],
                    outcome=Verdict.Outcome.FAIL if failed else Verdict.Outcome.PASS,
                    defect_class=defect,
                    source=Verdict.Source.MODEL,
                    model_version="demo-history",
                )
                for serial, failed, defect in verdicts
            ],
            batch_size=2000,
        )
        rollups_rebuild(project=project)
    return len(parts)
