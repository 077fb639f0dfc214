"""Upgrades keep what projects had set: data migrations, run forwards and back on a real schema."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_MODES = ("inspection", "0029_station_drift_baseline")
MODES = ("inspection", "0030_project_drift_review_modes")


def migrate(target: tuple[str, str] | None) -> Any:
    """The schema at ``target`` (None: every app's latest), and its historical models."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    targets = [target] if target else executor.loader.graph.leaf_nodes()
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
