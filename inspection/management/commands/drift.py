"""Drift since deployment for one project, as a table (or JSON): each station's latest parts
against the first ones the deployed models scored there, per signal."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder

from inspection.models import Project
from inspection.selectors import project_drift


class Command(BaseCommand):
    help = (
        "Print each station's drift since deployment (PSI, KS p-value and level per signal: image "
        "brightness and contrast, defect score, anomaly ratio). --check also opens and closes "
        "alerts, as beat does every 10 minutes."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--project", required=True, help="project name")
        parser.add_argument("--check", action="store_true", help="open and close drift alerts too")
        parser.add_argument("--json", action="store_true", help="one JSON document instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(name=options["project"]).first()
        if project is None:
            raise CommandError(f"No project named {options['project']!r}.")
        if options["check"]:
            from inspection.services.drift import drift_check

            changed = drift_check(project_id=project.pk)
            self.stderr.write(f"alerts opened: {changed['opened']}, closed: {changed['closed']}")
        state = project_drift(project=project)
        if options["json"]:
            self.stdout.write(json.dumps(state, cls=DjangoJSONEncoder))
            return
        if not state["deployed"]:
            self.stdout.write("No model deployed: nothing to compare.")
            return
        self.stdout.write(
            f"Deployed: {state['deployed']}; latest {state['window']} parts per station against the first "
            f"{state['window']} (at least {state['min_parts']} in each)."
        )
        header = f"{'station':<32} {'signal':<18} {'first':>9} {'latest':>9} {'PSI':>7} {'KS p':>9}  level"
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for station in state["stations"]:
            where = f"{station['line']} / {station['name']}"[:32]
            if not station["signals"]:
                parts = f"{station['reference']['parts']} + {station['current']['parts']} parts"
                self.stdout.write(f"{where:<32} {'(not enough parts: ' + parts + ')'}")
                continue
            for signal in station["signals"]:
                self.stdout.write(
                    f"{where:<32} {signal['label']:<18} {signal['reference_mean']:>9.3f} {signal['current_mean']:>9.3f}"
                    f" {signal['psi']:>7.3f} {signal['p_value']:>9.2g}  {signal['level']}"
                )
        for alert in state["open_alerts"]:
            since = f"{alert['opened_at']:%Y-%m-%d %H:%M} UTC"
            self.stdout.write(
                f"OPEN ALERT ({alert['source']}): {alert['line']} / {alert['name']}: {alert['label']} since {since}"
            )
        self.stdout.write(f"drift_review: {state['drift_review']}")
        for station in state["stations"]:
            if station["held_since"] is None:
                continue
            where = f"{station['line']} / {station['name']}"
            fitted = station["drift_calibration"]
            if fitted is None or fitted["t_pass"] < 0:
                decided = f"{fitted['parts'] if fitted else 0} of at least {station['drift_parts_needed']}"
                self.stdout.write(f"HELD: {where}: every part goes to people ({decided} decided since the drift)")
            else:
                self.stdout.write(
                    f"HELD: {where}: decided by the models on thresholds fitted to {fitted['parts']} parts since the "
                    f"drift (pass <= {fitted['t_pass']:.3f}, fail >= {fitted['t_fail']:.3f}, "
                    f"~{fitted['expected_review_rate']:.0%} to people)"
                )
