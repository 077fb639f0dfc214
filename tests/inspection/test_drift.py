"""Drift: a station whose parts, as the deployed models see them, move away from the first
parts those models scored there is flagged per signal, an alert opens once (audited, pushed
to the managers' screens) and closes when the parts come back."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from PIL import ImageEnhance
from rest_framework.test import APIClient

from inspection.models import AuditEvent, DriftAlert, ModelVersion, Project
from inspection.selectors import deployed_set_label, project_drift
from inspection.services import station_set_region
from inspection.services.drift import drift_check, drift_check_all
from inspection.services.model_runs import inspection_run
from tests.factories import StationWithToken, make_project, make_station, make_user, upload
from workers.synthetic import synthetic_part

pytestmark = pytest.mark.django_db

WINDOW = 20


@pytest.fixture(autouse=True)
def small_windows(settings: Any) -> None:
    settings.LOUPE_DRIFT_WINDOW = WINDOW
    settings.LOUPE_DRIFT_MIN_PARTS = 15


def part_png(seed: int, brightness: float = 1.0) -> bytes:
    image = synthetic_part(seed, size=64, defect=None).image
    if brightness != 1.0:
        image = ImageEnhance.Brightness(image).enhance(brightness)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def inspect(station: StationWithToken, count: int, *, first_seed: int, brightness: float = 1.0) -> None:
    """``count`` parts posted by the station and run through the deployed models."""
    for seed in range(first_seed, first_seed + count):
        posted: Any = APIClient().post(
            "/api/v1/inspections",
            {"part_serial": f"S-{seed}", "image": upload(part_png(seed, brightness), "p.png", "image/png")},
            format="multipart",
            headers=station.auth,
        )
        assert posted.status_code == 202, posted.content
        done = inspection_run(inspection_id=posted.json()["id"])
        assert done is not None and done.status == "done"


@pytest.fixture
def project(register: Callable[..., ModelVersion]) -> Project:
    project = make_project()
    register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    return project


def signals_of(project: Project, station: StationWithToken) -> dict[str, dict[str, Any]]:
    [state] = [s for s in project_drift(project=project)["stations"] if s["station"] == station.station.pk]
    return {signal["signal"]: signal for signal in state["signals"]}


def test_a_camera_that_went_dark_is_drift_on_brightness_and_one_alert_opens_until_it_recovers(
    project: Project, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    camera = make_station(project, "Top camera")
    pushed: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        "inspection.services.drift.notify_drift", lambda **kw: pushed.append((kw["event"], kw["payload"]))
    )
    inspect(camera, WINDOW, first_seed=0)  # the reference: as the line looked at deployment
    inspect(camera, WINDOW, first_seed=100)  # more of the same

    steady = signals_of(project, camera)
    assert steady["brightness"]["level"] == "stable"
    assert drift_check(project_id=project.pk) == {"opened": 0, "closed": 0}

    inspect(camera, WINDOW, first_seed=200, brightness=0.5)  # the lamp fails
    dark = signals_of(project, camera)
    with django_capture_on_commit_callbacks(execute=True):
        opened = drift_check(project_id=project.pk)
    again = drift_check(project_id=project.pk)

    assert dark["brightness"]["level"] == "drift"
    assert dark["brightness"]["current_mean"] < 0.6 * dark["brightness"]["reference_mean"]
    assert dark["brightness"]["psi"] >= 0.25 and dark["brightness"]["p_value"] < 0.01
    alerts = DriftAlert.objects.filter(station=camera.station, closed_at__isnull=True)
    assert "brightness" in set(alerts.values_list("signal", flat=True))
    assert opened["opened"] == alerts.count() and again == {"opened": 0, "closed": 0}
    brightness = alerts.get(signal="brightness")
    assert brightness.model_version == project.model_versions.get().serving_label
    event = AuditEvent.objects.get(action="drift.detected", object_id=str(brightness.pk))
    assert event.after["signal"] == "brightness" and event.after["station"] == camera.station.pk
    assert ("drift.detected", "brightness") in [(name, payload["signal"]) for name, payload in pushed]

    inspect(camera, WINDOW, first_seed=300)  # lamp replaced: the latest parts look as before
    with django_capture_on_commit_callbacks(execute=True):
        recovered = drift_check(project_id=project.pk)

    assert recovered == {"opened": 0, "closed": opened["opened"]}
    assert not DriftAlert.objects.filter(closed_at__isnull=True).exists()
    assert AuditEvent.objects.filter(action="drift.cleared").count() == opened["opened"]
    assert ("drift.cleared", "brightness") in [(name, payload["signal"]) for name, payload in pushed]


def test_a_station_is_not_judged_before_both_windows_hold_enough_parts(project: Project) -> None:
    camera = make_station(project, "New camera")
    inspect(camera, WINDOW + 5, first_seed=0)

    [state] = project_drift(project=project)["stations"]

    assert state["level"] == "too_few_parts"
    assert (state["reference"]["parts"], state["current"]["parts"]) == (WINDOW, 5)
    assert state["signals"] == []
    assert drift_check(project_id=project.pk) == {"opened": 0, "closed": 0}


def test_a_new_view_starts_a_new_reference(project: Project) -> None:
    camera = make_station(project, "Framed camera")
    inspect(camera, WINDOW, first_seed=0)
    station_set_region(station=camera.station, region={"x": 0.0, "y": 0.0, "width": 0.5, "height": 0.5})
    inspect(camera, WINDOW, first_seed=100, brightness=0.5)

    [state] = project_drift(project=project)["stations"]

    # The darker parts through the new view are its reference, not a drift from the old view.
    assert state["level"] == "too_few_parts"
    assert state["reference"]["parts"] == WINDOW and state["current"]["parts"] == 0


def test_another_deployment_closes_the_alerts_of_the_set_it_replaced(
    project: Project, register: Callable[..., ModelVersion]
) -> None:
    from inspection.services.model_versions import model_version_deploy

    camera = make_station(project, "Top camera")
    inspect(camera, WINDOW, first_seed=0)
    inspect(camera, WINDOW, first_seed=100, brightness=0.5)
    assert drift_check_all()["opened"] >= 1

    model_version_deploy(version=register(project, "classifier"))
    result = drift_check_all()

    assert result["closed"] >= 1
    assert not DriftAlert.objects.filter(closed_at__isnull=True).exists()  # the new set has no reference yet


def test_managers_read_drift_and_reviewers_may_not(project: Project) -> None:
    camera = make_station(project, "Top camera")
    inspect(camera, WINDOW, first_seed=0)
    inspect(camera, WINDOW, first_seed=100, brightness=0.5)
    drift_check(project_id=project.pk)
    manager, reviewer = APIClient(), APIClient()
    manager.force_authenticate(make_user(project, role="manager"))
    reviewer.force_authenticate(make_user(project, role="reviewer"))

    read: Any = manager.get(f"/api/v1/projects/{project.pk}/drift")
    refused: Any = reviewer.get(f"/api/v1/projects/{project.pk}/drift")

    assert refused.status_code == 403
    assert read.status_code == 200
    body = read.json()
    assert body["deployed"] == project.model_versions.get().serving_label
    assert (body["window"], body["min_parts"]) == (WINDOW, 15)
    [station] = body["stations"]
    assert (station["station"], station["name"], station["level"]) == (camera.station.pk, "Top camera", "drift")
    brightness = next(s for s in station["signals"] if s["signal"] == "brightness")
    assert brightness["label"] == "image brightness"
    assert len(brightness["histogram"]["edges"]) == len(brightness["histogram"]["reference"]) + 1
    assert {alert["signal"] for alert in body["open_alerts"]} >= {"brightness"}


def test_inference_records_the_brightness_and_contrast_the_models_saw(project: Project) -> None:
    camera = make_station(project, "Top camera")
    inspect(camera, 1, first_seed=0)
    inspect(camera, 1, first_seed=0, brightness=0.5)

    bright, dark = (i.scores for i in camera.station.inspections.order_by("id"))

    assert dark["brightness"] == pytest.approx(bright["brightness"] * 0.5, rel=0.05)
    assert dark["contrast"] < bright["contrast"]


def test_without_deployed_models_there_is_nothing_to_compare() -> None:
    project = make_project()
    make_station(project, "Top camera")

    state = project_drift(project=project)

    assert state["deployed"] is None and state["stations"] == []


def test_with_drift_review_on_a_drifting_stations_parts_go_to_people_and_the_others_stay_automatic(
    project: Project,
) -> None:
    from review.models import ReviewItem

    Project.objects.filter(pk=project.pk).update(auto_pass_threshold=1.0, auto_fail_threshold=1.0, audit_rate=0.0)
    camera, other = make_station(project, "Top camera"), make_station(project, "Side camera")
    inspect(camera, WINDOW, first_seed=0)
    inspect(camera, WINDOW, first_seed=100, brightness=0.5)
    assert drift_check(project_id=project.pk)["opened"] >= 1

    def routed(station: StationWithToken, seed: int) -> str:
        inspect(station, 1, first_seed=seed)
        part = station.station.inspections.latest("id").part
        item = ReviewItem.objects.filter(part=part).first()
        return f"review:{item.reason}" if item else str(part.verdicts.get(is_final=True).outcome)

    before = routed(camera, 500)  # drift_review is off by default: the alert only informs
    manager = APIClient()
    manager.force_authenticate(make_user(project, role="manager"))
    switched: Any = manager.patch(f"/api/v1/projects/{project.pk}", {"drift_review": "any"}, format="json")
    drifting, steady = routed(camera, 501), routed(other, 502)

    assert before == "pass"
    assert switched.status_code == 200 and switched.json()["drift_review"] == "any"
    event = AuditEvent.objects.filter(action="project.updated").latest("id")
    assert (event.before, event.after) == ({"drift_review": "off"}, {"drift_review": "any"})
    assert drifting == "review:drift"
    assert steady == "pass"


def test_drift_review_models_holds_only_stations_whose_models_outputs_moved_and_any_holds_camera_changes_too(
    project: Project,
) -> None:
    """A dimmer lamp that the models, standardising intensity, do not mind (an alert on the
    image's brightness) stays automatic under "models"; an alert on the anomaly ratio does not."""
    from review.models import ReviewItem

    Project.objects.filter(pk=project.pk).update(auto_pass_threshold=1.0, auto_fail_threshold=1.0, audit_rate=0.0)
    dimmer, blurred = make_station(project, "Dimmer camera"), make_station(project, "Blurred camera")
    inspect(dimmer, 1, first_seed=0)
    label = deployed_set_label(project_id=project.pk)
    for station, signal in ((dimmer, "brightness"), (blurred, "anomaly_ratio")):
        DriftAlert.objects.create(
            project=project,
            station=station.station,
            model_version=label,
            signal=signal,
            psi=0.6,
            p_value=1e-9,
            reference_mean=1.0,
            current_mean=2.0,
            latest_psi=0.6,
        )
    manager = APIClient()
    manager.force_authenticate(make_user(project, role="manager"))

    def routed(station: StationWithToken, seed: int) -> str:
        inspect(station, 1, first_seed=seed)
        part = station.station.inspections.latest("id").part
        item = ReviewItem.objects.filter(part=part).first()
        return f"review:{item.reason}" if item else str(part.verdicts.get(is_final=True).outcome)

    def held() -> list[int]:
        project.refresh_from_db()
        return list(project_drift(project=project)["held_stations"])

    assert held() == []  # off
    assert manager.patch(f"/api/v1/projects/{project.pk}", {"drift_review": "models"}, format="json").status_code == 200
    under_models = (routed(dimmer, 10), routed(blurred, 11), held())
    assert manager.patch(f"/api/v1/projects/{project.pk}", {"drift_review": "any"}, format="json").status_code == 200
    under_any = (routed(dimmer, 12), routed(blurred, 13), held())

    assert under_models == ("pass", "review:drift", [blurred.station.pk])
    assert under_any == ("review:drift", "review:drift", sorted([dimmer.station.pk, blurred.station.pk]))
    sources = {alert["signal"]: alert["source"] for alert in project_drift(project=project)["open_alerts"]}
    assert sources == {"brightness": "camera", "anomaly_ratio": "models"}


def test_a_held_station_is_decided_by_the_models_again_on_thresholds_fitted_to_its_parts_since_the_drift(
    project: Project, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    """Under drift_review every part of a drifting station goes to people, so the parts they
    decide since the alert opened are a fair sample of the drifted line: thresholds fitted on
    them (as the project's targets ask) let the models decide that station's parts again before
    anyone retrains or accepts a new normal. Parts from before the drift do not count."""
    defective_serials: set[str] = set()
    from inspection.models import Calibration
    from inspection.services.routing import routing_recalibrate_stale
    from review.models import ReviewItem
    from review.services import review_decide

    # Targets loose enough for a dozen parts (no escape in 12 at confidence 0.5: 5.6 % < 10 %).
    Project.objects.filter(pk=project.pk).update(
        audit_rate=0.0,
        target_escape_rate=0.1,
        target_false_reject_rate=0.1,
        calibration_confidence=0.5,
        drift_review="models",
    )
    project.refresh_from_db()
    camera = make_station(project, "Top camera")
    reviewer, pit = make_user(project), project.defect_classes.get(name="pit")

    def post(seed: int, defect: str | None, serial: str = "") -> Any:
        image = synthetic_part(seed, size=64, defect=defect).image
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        posted: Any = APIClient().post(
            "/api/v1/inspections",
            {"part_serial": serial or f"S-{seed}", "image": upload(buffer.getvalue(), "p.png", "image/png")},
            format="multipart",
            headers=camera.auth,
        )
        assert posted.status_code == 202, posted.content
        done = inspection_run(inspection_id=posted.json()["id"])
        assert done is not None and done.status == "done"
        return done

    def routed(inspection: Any) -> str:
        item = ReviewItem.objects.filter(part=inspection.part).first()
        return f"review:{item.reason}" if item else str(inspection.part.verdicts.get(is_final=True).outcome)

    def decide_all() -> None:
        for item in ReviewItem.objects.filter(part__inspections__station=camera.station, status="open"):
            if item.part.serial in defective_serials:
                review_decide(item=item, reviewer=reviewer, outcome="fail", defect_class_id=pit.pk)
            else:
                review_decide(item=item, reviewer=reviewer, outcome="pass")

    for seed in range(3):  # before the drift: not the drifted line
        post(seed, None)
    decide_all()
    alert = DriftAlert.objects.create(
        project=project,
        station=camera.station,
        model_version=deployed_set_label(project_id=project.pk),
        signal="anomaly_ratio",
        psi=0.7,
        p_value=1e-9,
        reference_mean=0.4,
        current_mean=0.9,
        latest_psi=0.7,
    )
    since_drift = []
    for seed in range(10, 22):
        defect = "pit" if seed % 2 else None
        if defect:
            defective_serials.add(f"S-{seed}")
        since_drift.append(post(seed, defect))
    held = [routed(inspection) for inspection in since_drift]
    decide_all()

    pushed: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        "inspection.services.routing.notify_drift", lambda **kw: pushed.append((kw["event"], kw["payload"]))
    )
    with django_capture_on_commit_callbacks(execute=True):
        refitted = routing_recalibrate_stale()
    fitted = Calibration.objects.get(station=camera.station, drift_since=alert.opened_at)
    goods = [i for i in since_drift if i.part.serial not in defective_serials]
    lowest_good = min(goods, key=lambda i: i.scores["defect_score"])
    again = post(int(lowest_good.part.serial.removeprefix("S-")), None, "again")  # that good part again
    defective_serials.add("defect-again")
    defect_again = post(11, "pit", "defect-again")
    [state] = project_drift(project=project)["stations"]

    assert set(held) == {"review:drift"}  # held while nothing was fitted
    assert refitted >= 1 and fitted.parts == 12  # the 12 since the drift, not the 3 before
    assert fitted.t_pass >= lowest_good.scores["defect_score"]
    assert routed(again) == "pass"
    assert routed(defect_again) != "pass"
    assert state["held_since"] == alert.opened_at
    # The managers' screens hear of it (the dashboard reloads its drift panel).
    assert [(event, payload["station"], payload["parts"]) for event, payload in pushed] == [
        ("drift.calibrated", camera.station.pk, 12)
    ]
    assert state["drift_calibration"]["id"] == fitted.pk and state["drift_calibration"]["parts"] == 12
    assert state["drift_parts_needed"] == 7  # no escape in 7 bounds it at 9.4 % < 10 % (confidence 0.5)

    # Once the models decide its parts again, people see only the doubtful ones (which would
    # bias the fit: test_routing's fair-sample tests), so the random sample goes on adding to it.
    Project.objects.filter(pk=project.pk).update(audit_rate=1.0)  # every part drawn from here on
    drawn = post(int(lowest_good.part.serial.removeprefix("S-")), None, "drawn")
    decide_all()
    with django_capture_on_commit_callbacks(execute=True):
        routing_recalibrate_stale()
    refit = Calibration.objects.filter(station=camera.station, drift_since=alert.opened_at).latest("id")

    assert routed(drawn) == "review:audit_sample" and ReviewItem.objects.get(part=drawn.part).sampled
    # The 12 held parts and the drawn one; not "again" and "defect-again", which the models decided.
    assert refit.pk != fitted.pk and refit.parts == 13
    assert len(pushed) == 1  # still deciding: the managers were told once


def test_with_drift_review_off_no_drift_thresholds_are_fitted_and_the_station_keeps_the_projects(
    project: Project,
) -> None:
    from inspection.models import Calibration
    from inspection.services.routing import routing_recalibrate_stale

    camera = make_station(project, "Top camera")
    inspect(camera, 3, first_seed=0)
    DriftAlert.objects.create(
        project=project,
        station=camera.station,
        model_version=deployed_set_label(project_id=project.pk),
        signal="defect_score",
        psi=0.7,
        p_value=1e-9,
        reference_mean=0.1,
        current_mean=0.5,
        latest_psi=0.7,
    )

    routing_recalibrate_stale()
    [state] = project_drift(project=project)["stations"]

    assert not Calibration.objects.filter(drift_since__isnull=False).exists()
    assert state["held_since"] is None and state["drift_calibration"] is None
    assert state["drift_parts_needed"] is None


def test_drift_review_is_one_of_its_modes_and_the_booleans_it_was_still_mean_any_and_off(project: Project) -> None:
    manager = APIClient()
    manager.force_authenticate(make_user(project, role="manager"))
    url = f"/api/v1/projects/{project.pk}"

    refused: Any = manager.patch(url, {"drift_review": "sometimes"}, format="json")
    unchanged = Project.objects.get(pk=project.pk).drift_review
    as_true: Any = manager.patch(url, {"drift_review": True}, format="json")
    as_false: Any = manager.patch(url, {"drift_review": False}, format="json")

    assert refused.status_code == 400 and "drift_review" in refused.content.decode()
    assert unchanged == "off"
    assert as_true.json()["drift_review"] == "any" and as_false.json()["drift_review"] == "off"


def test_the_drift_command_prints_each_stations_signals_and_checks_alerts(project: Project) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    camera = make_station(project, "Top camera")
    inspect(camera, WINDOW, first_seed=0)
    inspect(camera, WINDOW, first_seed=100, brightness=0.5)
    Project.objects.filter(pk=project.pk).update(drift_review="any")
    out, err = io.StringIO(), io.StringIO()

    call_command("drift", "--project", project.name, "--check", stdout=out, stderr=err)
    as_json = io.StringIO()
    call_command("drift", "--project", project.name, "--json", stdout=as_json)

    table = out.getvalue()
    brightness_row = next(line for line in table.splitlines() if "image brightness" in line)
    assert brightness_row.startswith("Line 1 / Top camera") and brightness_row.endswith("drift")
    assert "OPEN ALERT (camera): Line 1 / Top camera: image brightness" in table
    assert "drift_review: any" in table
    assert "HELD: Line 1 / Top camera: every part goes to people (0 of at least 460 decided since the drift)" in table
    assert err.getvalue().startswith("alerts opened: ")
    assert json.loads(as_json.getvalue())["stations"][0]["level"] == "drift"
    with pytest.raises(CommandError, match="No project named"):
        call_command("drift", "--project", "nope")


def test_a_manager_accepts_a_stations_new_normal_and_drift_is_measured_from_there(project: Project) -> None:
    from django.utils import timezone

    camera = make_station(project, "Top camera")
    inspect(camera, WINDOW, first_seed=0)
    inspect(camera, WINDOW, first_seed=100, brightness=0.5)  # a new lamp, dimmer for good
    assert drift_check(project_id=project.pk)["opened"] >= 1
    manager, reviewer = APIClient(), APIClient()
    manager.force_authenticate(make_user(project, role="manager"))
    reviewer.force_authenticate(make_user(project, role="reviewer"))

    refused: Any = reviewer.post(f"/api/v1/stations/{camera.station.pk}/drift-baseline")
    accepted: Any = manager.post(f"/api/v1/stations/{camera.station.pk}/drift-baseline")

    assert refused.status_code == 403
    assert accepted.status_code == 200
    camera.station.refresh_from_db()
    assert camera.station.drift_baseline_at is not None and camera.station.drift_baseline_at <= timezone.now()
    assert not DriftAlert.objects.filter(closed_at__isnull=True).exists()
    event = AuditEvent.objects.get(action="drift.rebaselined")
    assert event.before == {"drift_baseline_at": None} and event.object_id == str(camera.station.pk)
    [state] = project_drift(project=project)["stations"]
    assert state["level"] == "too_few_parts" and state["reference"]["parts"] == 0

    inspect(camera, 2 * WINDOW, first_seed=300, brightness=0.5)  # the new normal, measured afresh
    [state] = project_drift(project=project)["stations"]
    assert state["level"] == "stable"
    assert drift_check(project_id=project.pk) == {"opened": 0, "closed": 0}
