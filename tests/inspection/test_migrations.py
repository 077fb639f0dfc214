"""Upgrades keep what projects had set: data migrations, run forwards and back on a real schema."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_MODES = ("inspection", "0029_station_drift_baseline")
MODES = ("inspection", "0030_project_drift_review_modes")


def migrate(target: tuple[str, str] | None, *others: tuple[str, str]) -> Any:
    """The schema at ``target`` (and ``others``; None: every app's latest), and its historical models."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    targets = [target, *others] if target else executor.loader.graph.leaf_nodes()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_drift_review_on_becomes_any_off_stays_off_and_back() -> None:
    old = migrate(BEFORE_MODES)
    Project = old.get_model("inspection", "Project")
    on = Project.objects.create(name="On", drift_review=True).pk
    off = Project.objects.create(name="Off", drift_review=False).pk

    new = migrate(MODES)
    upgraded = dict(new.get_model("inspection", "Project").objects.values_list("pk", "drift_review"))
    models_mode = new.get_model("inspection", "Project").objects.create(name="Models", drift_review="models").pk
    back = migrate(BEFORE_MODES)
    downgraded = dict(back.get_model("inspection", "Project").objects.values_list("pk", "drift_review"))
    migrate(None)  # leave the schema as the other tests expect it

    assert upgraded == {on: "any", off: "off"}
    assert downgraded == {on: True, off: False, models_mode: True}


BEFORE_SAMPLED = ("review", "0007_reason_drift")
INSPECTION_LATEST = ("inspection", "0031_calibration_drift_since")
SAMPLED = ("review", "0008_reviewitem_sampled")


def test_items_that_came_to_people_whatever_their_scores_are_marked_sampled_on_upgrade() -> None:
    old = migrate(BEFORE_SAMPLED, INSPECTION_LATEST)
    model = old.get_model
    project = model("inspection", "Project").objects.create(name="P")
    line = model("inspection", "Line").objects.create(project=project, name="L")
    station = model("inspection", "Station").objects.create(project=project, line=line, name="S")
    image = model("inspection", "Image").objects.create(
        sha256="0" * 64, file="x", format="PNG", width=1, height=1, bytes=1
    )
    items: dict[str, int] = {}

    def routed(reason: str, thresholds: dict[str, float] | None = None) -> None:
        part = model("inspection", "Part").objects.create(project=project, serial=f"{reason}-{len(items)}")
        inspection = model("inspection", "Inspection").objects.create(
            project=project, part=part, station=station, image=image, captured_at="2026-01-01T00:00Z",
            scores={"defect_score": 0.5, "thresholds": thresholds or {"t_pass": 0.1, "t_fail": 0.9}},
        )  # fmt: skip
        item = model("review", "ReviewItem").objects.create(
            project=project, part=part, inspection=inspection, reason=reason
        )
        items[f"{reason}{'-held' if thresholds else ''}"] = item.pk

    for reason in ("audit_sample", "cold_start", "uncertain", "disagreement", "drift"):
        routed(reason)
    routed("uncertain", {"t_pass": -1.0, "t_fail": 2.0})  # the project's thresholds decided nothing then

    new = migrate(SAMPLED, INSPECTION_LATEST)
    sampled = dict(new.get_model("review", "ReviewItem").objects.values_list("pk", "sampled"))
    migrate(None)

    assert {name for name, pk in items.items() if sampled[pk]} == {"audit_sample", "cold_start", "uncertain-held"}
