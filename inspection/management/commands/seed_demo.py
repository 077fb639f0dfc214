"""Create (or refresh) the demo project: one user per role and one station with a token."""

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
        self.stdout.write("Sign in at http://127.0.0.1:8000/accounts/login/ with:")
        for role, username, password in credentials:
            self.stdout.write(f"  {role:<10} {username:<16} {password}")
        (settings.VAR_DIR / "demo-credentials.txt").write_text(
            "".join(f"{role} {username} {password}\n" for role, username, password in credentials)
        )
