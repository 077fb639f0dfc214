"""Backfill the annotation studio: a label task for every done inspection that has none."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from annotation.services import label_tasks_sync
from inspection.models import Project


class Command(BaseCommand):
    help = (
        "Create the missing label tasks of one project (--project NAME or ID) or of all; idempotent and "
        'restartable. Prints one JSON line per project: {"project", "created"}.'
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
            created = label_tasks_sync(project=project)
            self.stdout.write(json.dumps({"project": project.pk, "created": created}))
