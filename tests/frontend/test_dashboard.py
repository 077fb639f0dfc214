"""The manager's dashboard in a real browser: its figures are the database's, labels stay
text, CSV exports what a chart shows, and the operating point is set here (audited)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from django.utils import timezone

from inspection.models import AuditEvent, Image, Inspection, Part, Project, Verdict
from inspection.services import station_create
from inspection.services.verdicts import verdict_record_final
from tests.conftest import LiveStack, wait_until
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = '<img src=x onerror="alert(1)">'


def record_verdicts(project: Project, outcomes: Sequence[tuple[str, str | None, str]]) -> None:
    """Final model verdicts, one inspected part each: (outcome, defect class name, line)."""
    stations = {line: station_create(project=project, line_name=line, station_name="Cam") for _, _, line in outcomes}
    image = Image.objects.create(sha256="0" * 64, file="dashboard.png", format="PNG", width=8, height=8, bytes=64)
    for index, (outcome, defect, line) in enumerate(outcomes):
        part = Part.objects.create(project=project, serial=f"D-{index}", sku="PLATE-A" if index % 2 else "PLATE-B")
        inspection = Inspection.objects.create(
            project=project,
            part=part,
            station=stations[line],
            image=image,
            captured_at=timezone.now(),
            status=Inspection.Status.DONE,
        )
        verdict_record_final(
            part=part,
            outcome=outcome,
            source=Verdict.Source.MODEL,
            defect_class=project.defect_classes.get(name=defect) if defect else None,
            inspection=inspection,
            model_version="classifier#1",
        )


def test_the_managers_yield_figure_equals_the_database_and_labels_stay_text(live: LiveStack, open_screen: Any) -> None:
    project = make_project(classes=("crack", HOSTILE))
    outcomes = (
        [("pass", None, "Line A")] * 17
        + [("fail", "crack", "Line A")] * 3
        + [("fail", HOSTILE, "Line B")] * 5
        + [("pass", None, "Line B")] * 6
    )
    record_verdicts(project, outcomes)
    manager = make_user(project, role="manager")
    screen = open_screen(manager, "dashboard")
    page = screen.page
    page.wait_for_selector("#tile-first_pass_yield[data-value]")
    page.wait_for_selector("#chart-pareto canvas")
    page.wait_for_selector("#model-versions")
    screen.shot("dashboard")

    final = Verdict.objects.filter(project=project, is_final=True)
    expected = final.filter(outcome="pass").count() / final.count()
    shown = float(page.get_attribute("#tile-first_pass_yield", "data-value") or "nan")
    assert shown == pytest.approx(expected)
    assert page.inner_text("#tile-first_pass_yield .figure") == f"{expected * 100:.2f} %"
    assert page.get_attribute("#tile-parts_decided", "data-value") == str(len(outcomes))

    # The hostile class name is drawn on the canvas as text; nothing it holds ran or landed in the DOM.
    assert page.locator("img[src=x]").count() == 0
    assert screen.dialogs == [] and screen.errors == []

    # CSV of the Pareto chart: what the chart shows, the hostile label as a plain cell.
    href = page.get_attribute("a[data-chart=pareto]", "href")
    assert href is not None
    response = page.request.get(href)
    assert response.status == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text())))
    assert [(r["defect_class"], r["failed"]) for r in rows] == [(HOSTILE, "5"), ("crack", "3")]


def test_the_manager_sets_the_operating_point_from_the_dashboard_and_it_is_audited(
    live: LiveStack, open_screen: Any
) -> None:
    project = make_project()
    manager = make_user(project, role="manager")
    screen = open_screen(manager, "dashboard")
    page = screen.page
    page.wait_for_selector("#target-escape")

    page.fill("#target-escape", "1.5")
    page.click("#save-operating-point")
    page.wait_for_selector("#operating-point-status >> text=saved")

    project.refresh_from_db()
    assert project.target_escape_rate == pytest.approx(0.015)
    assert AuditEvent.objects.filter(project=project, action="project.updated").exists()


def test_the_dashboard_says_when_the_audited_parts_made_the_thresholds_start_again(
    live: LiveStack, open_screen: Any
) -> None:
    from inspection.models import Calibration, ModelVersion
    from inspection.services.routing import deployed_label

    project = make_project()
    Project.objects.filter(pk=project.pk).update(time_zone="Europe/Berlin")
    ModelVersion.objects.create(project=project, kind="classifier", status=ModelVersion.Status.DEPLOYED)
    Calibration.objects.create(
        project=project, model_version=deployed_label(project=project), parts=1000, target_escape_rate=0.005,
        target_false_reject_rate=0.01, confidence=0.9, t_pass=0.12, t_fail=0.9, expected_review_rate=0.183,
        escape_rate=0.002, false_reject_rate=0.001, sample_since=datetime(2026, 12, 4, 5, 30, tzinfo=UTC),
    )  # fmt: skip
    manager = make_user(project, role="manager")
    screen = open_screen(manager, "dashboard")
    page = screen.page
    page.wait_for_selector("#calibration-sample >> text=breaking a target")

    text = page.inner_text("#calibration-sample")
    assert "1000 parts decided since 4 Dec 2026, 06:30" in text  # the plant's clock
    assert "about 18.3 % of parts go to people" in text
    assert screen.errors == []


def test_a_manager_sets_the_plant_clock_and_the_dashboard_counts_in_it(live: LiveStack, open_screen: Any) -> None:
    project = make_project(classes=("crack",))
    record_verdicts(project, [("pass", None, "Line A")] * 4 + [("fail", "crack", "Line A")])
    manager = make_user(project, role="manager")
    screen = open_screen(manager, "settings")
    page = screen.page
    page.wait_for_selector("#plant-clock")
    assert page.input_value("#plant-time-zone") == "UTC"
    assert page.input_value("#plant-shifts") == "A 6, B 14, C 22"

    page.fill("#plant-shifts", "Early 6, Late")  # refused in the browser, with the reason
    page.click("#plant-clock button[type=submit]")
    page.wait_for_function("() => document.querySelector('#settings-message').textContent.includes('Late')")
    page.select_option("#plant-time-zone", "Europe/Berlin")
    page.fill("#plant-shifts", "Night 22, Early 6, Late 14")
    page.click("#plant-clock button[type=submit]")
    wait_until(lambda: Project.objects.get(pk=project.pk).time_zone == "Europe/Berlin", timeout_s=10)
    page.wait_for_function("() => document.querySelector('#plant-shifts').value === 'Early 6, Late 14, Night 22'")
    project.refresh_from_db()
    names_and_starts = [(shift["name"], shift["start"]) for shift in project.shifts]
    assert names_and_starts == [("Early", 6), ("Late", 14), ("Night", 22)]
    event = AuditEvent.objects.filter(project=project, action="project.updated").latest("id")
    assert event.after["time_zone"] == "Europe/Berlin"

    page.goto("/#/dashboard")
    page.wait_for_selector("#tile-parts_decided[data-value]")
    assert "Europe/Berlin" in (page.text_content("#plant-time") or "")
    assert page.get_attribute("#tile-parts_decided", "data-value") == "5"
    assert screen.dialogs == [] and screen.errors == []


def test_the_dashboard_draws_a_stations_drift_and_shows_its_alert_as_soon_as_it_opens(
    live: LiveStack, open_screen: Any, register: Any, settings: Any
) -> None:
    import requests

    from inspection.models import ModelVersion
    from inspection.services.drift import drift_check
    from tests.conftest import LIVE_DRIFT_MIN_PARTS, LIVE_DRIFT_WINDOW
    from tests.factories import make_station
    from tests.inspection.test_drift import part_png

    settings.LOUPE_DRIFT_WINDOW, settings.LOUPE_DRIFT_MIN_PARTS = LIVE_DRIFT_WINDOW, LIVE_DRIFT_MIN_PARTS
    project = make_project()
    register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    camera = make_station(project, "Top camera")
    for index in range(2 * LIVE_DRIFT_WINDOW):  # the first parts, then the lamp fails
        response = requests.post(
            f"{live.base_url}/api/v1/inspections",
            headers=camera.auth,
            data={"part_serial": f"D-{index}"},
            files={"image": ("cam.png", part_png(index, 1.0 if index < LIVE_DRIFT_WINDOW else 0.5), "image/png")},
            timeout=10,
        )
        assert response.status_code == 202, response.text
    done = Inspection.objects.filter(project=project, status="done")
    wait_until(lambda: done.count() == 2 * LIVE_DRIFT_WINDOW, timeout_s=120, what="the worker scoring every part")

    screen = open_screen(make_user(project, role="manager"), "dashboard")
    page = screen.page
    card = f'.drift-station[data-station="{camera.station.pk}"]'
    page.wait_for_selector(card)
    assert page.get_attribute(card, "data-level") == "drift"
    assert page.get_attribute(f'{card} tr[data-signal="brightness"]', "data-level") == "drift"
    summary = page.text_content(f"{card} .drift-summary") or ""
    assert summary.startswith("Line 1 / Top camera: drift") or "Top camera: drift" in summary
    page.wait_for_function(f"() => document.querySelector('{card} .chart canvas') !== null")
    assert page.locator("#drift-alerts li").count() == 0

    drift_check(project_id=project.pk)  # as beat does: the alert is pushed and the panel reloads

    page.wait_for_selector(f'#drift-alerts li[data-station="{camera.station.pk}"]')
    assert "Top camera" in (page.text_content("#drift-alerts") or "")
    # The manager sends drifting stations' parts to people from here (audited): a camera-only
    # change holds the station only under "any".
    assert page.input_value("#drift-review") == "off"
    page.select_option("#drift-review", "any")
    page.wait_for_function(
        "() => document.querySelector('#drift-review-status').textContent.includes('now go to people')"
    )
    page.wait_for_selector(f'{card}[data-held="true"] .held')
    assert Project.objects.get(pk=project.pk).drift_review == "any"
    assert AuditEvent.objects.filter(action="project.updated", after={"drift_review": "any"}).exists()
    page.locator("#drift").scroll_into_view_if_needed()
    screen.shot("dashboard-drift")

    # The dimmer lamp is there to stay: the manager accepts it as the station's new normal.
    page.click(f"{card} button.accept-baseline")
    page.wait_for_function(f"() => document.querySelector('{card}')?.getAttribute('data-level') === 'too_few_parts'")
    assert page.locator("#drift-alerts li").count() == 0
    assert AuditEvent.objects.filter(action="drift.rebaselined", object_id=str(camera.station.pk)).exists()
    assert screen.dialogs == [] and screen.errors == []


def test_a_manager_lets_the_models_retrain_and_redeploy_themselves_from_the_settings(
    live: LiveStack, open_screen: Any
) -> None:
    project = make_project()
    manager = make_user(project, role="manager")
    screen = open_screen(manager, "settings")
    page = screen.page
    page.wait_for_selector("#retraining-settings")
    assert page.input_value("#retrain-after-labels") == "0" and not page.is_checked("#promote-when-better")

    page.fill("#retrain-after-labels", "250")
    page.check("#promote-when-better")
    page.click("#retraining-settings button[type=submit]")
    wait_until(lambda: Project.objects.get(pk=project.pk).retrain_after_labels == 250, timeout_s=10)

    project.refresh_from_db()
    assert project.promote_when_better is True
    event = AuditEvent.objects.filter(project=project, action="project.updated").latest("id")
    assert event.after == {"retrain_after_labels": 250, "promote_when_better": True}
    assert screen.errors == []
