"""Train a model for a project in this process, with a progress bar."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from inspection.errors import DomainError
from inspection.models import ModelVersion, Project
from inspection.services.model_versions import training_run, training_start


class Command(BaseCommand):
    help = "Train a classifier, anomaly detector or segmenter on the project's labelled images."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--project", required=True)
        parser.add_argument("--kind", required=True, choices=ModelVersion.Kind.values)
        parser.add_argument("--hyperparameters", default="{}", help="JSON object, e.g. '{\"epochs\": 5}'")
        parser.add_argument(
            "--deploy",
            action="store_true",
            help="compare the new version with the models serving, then deploy it unless it is worse",
        )
        parser.add_argument("--force", action="store_true", help="with --deploy: deploy it even if it is worse")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(name=options["project"]).first()
        if project is None:
            raise CommandError(f"No project named {options['project']!r}.")
        try:
            hyperparameters = json.loads(options["hyperparameters"])
        except json.JSONDecodeError as error:
            raise CommandError(f"--hyperparameters is not JSON: {error}") from None
        try:
            version = training_start(
                project=project, kind=options["kind"], hyperparameters=hyperparameters, enqueue=False
            )
        except DomainError as error:
            raise CommandError(error.detail) from None
        self.stdout.write(f"training {version.label} on {len(version.training_data['annotations'])} labelled images")

        def bar(state: dict[str, Any]) -> None:
            width = 30
            done = int(width * state["epoch"] / max(state["epochs"], 1))
            metric = f" {state['metric_name']}={state['metric']:.4f}" if state.get("metric") is not None else ""
            self.stdout.write(
                f"\r[{'#' * done}{'.' * (width - done)}] {state['epoch']}/{state['epochs']} "
                f"loss={state['loss']:.4f}{metric}",
                ending="",
            )
            self.stdout.flush()

        finished = training_run(model_version_id=version.pk, on_progress=bar)
        self.stdout.write("")
        if finished is None or finished.status != ModelVersion.Status.READY:
            raise CommandError(
                f"training ended {finished.status if finished else 'missing'}: {finished and finished.error}"
            )
        if options["deploy"]:
            from inspection.services.model_compare import ROUTING_KINDS, model_version_compare
            from inspection.services.model_versions import model_version_deploy

            if finished.kind in ROUTING_KINDS:
                self.stdout.write("comparing with the models serving on the latest audited parts")
                comparison = model_version_compare(version_id=finished.pk)
                finished.refresh_from_db()
                mine, theirs = comparison["candidate_figures"], comparison["serving_figures"]
                against = f" against {theirs['review_rate']:.1%}" if theirs else ""
                self.stdout.write(
                    f"comparison: {comparison['verdict']} on {comparison['parts']} parts: "
                    f"{mine['review_rate']:.1%} of parts to people{against}"
                )
            try:
                finished = model_version_deploy(version=finished, force=options["force"])
            except DomainError as error:
                raise CommandError(f"not deployed: {error.detail}") from None
        self.stdout.write(f"model version {finished.pk} ({finished.label}) is {finished.status}")
        for warning in finished.metrics.get("data_warnings", []):
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(
            json.dumps({"model_version": finished.pk, "kind": finished.kind, "metrics": finished.metrics})
        )
