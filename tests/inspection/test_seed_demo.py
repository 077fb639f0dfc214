"""The demo: users per role, a station token for the simulator, and marked history that the
dashboards draw from (counted in the rollups exactly like live verdicts)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from inspection.dashboards import dashboard_query, dashboard_summary
from inspection.models import Part, Project, Verdict

pytestmark = pytest.mark.django_db


def test_seed_demo_adds_two_weeks_of_marked_history_once_and_the_dashboards_count_it() -> None:
    out = io.StringIO()
    call_command("seed_demo", "--history-days", "2", stdout=out)
    call_command("seed_demo", "--history-days", "2", stdout=io.StringIO())  # again: no second history

    project = Project.objects.get(name__startswith="Demo")
    history = Part.objects.filter(project=project, serial__startswith="HIST-")
    assert history.count() == 2 * 4 * 120
    assert "demo-manager" in out.getvalue() and "http://127.0.0.1:8000/" in out.getvalue()
    verdicts = Verdict.objects.filter(project=project, is_final=True)
    summary = dashboard_summary(dashboard_query(project=project))["rows"][0]
    assert summary["parts_decided"] == verdicts.count() == history.count()
    assert summary["failed"] == verdicts.filter(outcome="fail").count() > 0


def test_the_demo_model_is_trained_on_generated_labelled_parts_deployed_once_with_demo_targets() -> None:
    import json

    from inspection.models import ModelVersion
    from tests.factories import TINY

    call_command("seed_demo", "--history-days", "0", stdout=io.StringIO())
    out = io.StringIO()
    call_command("demo_model", "--hyperparameters", json.dumps(TINY["classifier"]), stdout=out)
    again = io.StringIO()
    call_command("demo_model", stdout=again)

    project = Project.objects.get(name__startswith="Demo")
    deployed = ModelVersion.objects.get(project=project, status="deployed")
    assert deployed.kind == "classifier" and f"{deployed.label} deployed" in out.getvalue()
    assert "extracting features" in out.getvalue() and "epoch 1/3" in out.getvalue()
    assert "serves already" in again.getvalue() and ModelVersion.objects.filter(project=project).count() == 1
    # 60 goods and 20 of each class, each defect with its mask, all learnt from.
    assert Part.objects.filter(project=project, serial__startswith="DEMO-").count() == 120
    assert len(deployed.training_data["annotations"]) == 120
    assert (project.target_escape_rate, project.audit_rate) == (0.02, 0.05)
