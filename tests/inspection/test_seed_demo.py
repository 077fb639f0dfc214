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
