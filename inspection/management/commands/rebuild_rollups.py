"""Recompute the dashboards' rollups from the final verdicts."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from inspection.models import Project
from inspection.services.rollups import rollups_rebuild


class Command(BaseCommand):
    help = (
        "Rebuild the dashboard rollups of one project (--project NAME or ID) or of all; prints one JSON line per "
        'project: {"project", "yield_rows", "defect_rows", "seconds"}.'
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--project", help="project name or id (default: every project)")

    def handle(self, *args: Any, **options: Any) -> None:
        projects = Project.objects.order_by("id")
        wanted = options["project"]
        if wanted:
            projects = projects.filter(pk=int(wanted)) if wanted.isdigit() else projects.filter(name=wanted)
            if not projects.exists():
                raise CommandError(f"No project {wanted!r}.")
        for project in projects:
            started = time.perf_counter()
            written = rollups_rebuild(project=project)
            seconds = round(time.perf_counter() - started, 3)
            self.stdout.write(json.dumps({"project": project.pk, **written, "seconds": seconds}))
