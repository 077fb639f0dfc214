"""Train and deploy the demo project's first classifier, unless one serves already (started
by `manage.py run_stack --demo`; about a minute on 2 cores)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from inspection.management.commands.seed_demo import DEMO_PROJECT
from inspection.models import Project
from inspection.services.demo import demo_model_ensure


class Command(BaseCommand):
    help = "Train and deploy the demo project's classifier on generated labelled parts (once)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--hyperparameters", default="", help="JSON object overriding the demo's")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(name=DEMO_PROJECT).first()
        if project is None:
            raise CommandError("No demo project: run `manage.py seed_demo` first.")
        hyperparameters = json.loads(options["hyperparameters"]) if options["hyperparameters"] else None

        def progress(state: dict[str, Any]) -> None:
            step = f"{state['epoch']}/{state['epochs']}"
            if state.get("metric_name") == "feature_views":
                self.stdout.write(f"demo model: extracting features {step}")
            else:
                self.stdout.write(f"demo model: epoch {step} loss={state['loss']:.4f}")
            self.stdout.flush()

        self.stdout.write("demo model: training a classifier on generated labelled parts")
        deployed = demo_model_ensure(project=project, hyperparameters=hyperparameters, on_progress=progress)
        if deployed is None:
            self.stdout.write("demo model: a classifier serves already")
        else:
            self.stdout.write(self.style.SUCCESS(f"demo model: {deployed.label} deployed"))
