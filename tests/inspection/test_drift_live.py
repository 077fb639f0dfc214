"""A drift alert reaches the managers' screens live: a real Celery worker scores the parts a
station posts over HTTP, the drift check opens the alert, and a manager's websocket receives
it (a reviewer's does not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from inspection.models import Inspection, ModelVersion
from inspection.services.drift import drift_check
from tests.conftest import LIVE_DRIFT_MIN_PARTS, LIVE_DRIFT_WINDOW, LiveStack, wait_until
from tests.factories import make_project, make_station, make_user
from tests.inspection.test_drift import part_png
from tests.review.test_live_loop import next_event, review_socket, sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_manager_is_told_live_when_a_station_drifts(live: LiveStack, register: Any, settings: Any) -> None:
    settings.LOUPE_DRIFT_WINDOW, settings.LOUPE_DRIFT_MIN_PARTS = LIVE_DRIFT_WINDOW, LIVE_DRIFT_MIN_PARTS
    project = make_project()
    register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    camera = make_station(project, "Top camera")
    for index in range(2 * LIVE_DRIFT_WINDOW):
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
    manager = sign_in(live, make_user(project, role="manager"))
    reviewer = sign_in(live, make_user(project, role="reviewer"))

    with review_socket(live, manager) as managers, review_socket(live, reviewer) as reviewers:
        assert next_event(managers, "hello")["training"] == [project.pk]
        assert next_event(reviewers, "hello")["training"] == []
        opened = drift_check(project_id=project.pk)
        pushed = next_event(managers, "drift.detected")
        with pytest.raises(TimeoutError):
            next_event(reviewers, "drift.detected", timeout_s=2)

    assert opened["opened"] >= 1
    assert pushed["station"] == camera.station.pk and pushed["name"] == "Top camera"
    assert pushed["signal"] in {"brightness", "contrast", "defect_score", "anomaly_ratio"}
    assert pushed["current_mean"] != pushed["reference_mean"]


def test_the_line_simulators_failing_lamp_and_lens_darken_and_blur_the_parts_after_the_set_counts(
    live: LiveStack, register: Any, tmp_path: Any
) -> None:
    from django.core.management import call_command

    from inspection.services import station_token_issue

    project = make_project()
    register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    camera = make_station(project, "Simulated camera")
    _, token = station_token_issue(station=camera.station)
    token_file = tmp_path / "token"
    token_file.write_text(token)

    call_command(
        "simulate_line",
        "--url", live.base_url, "--token-file", str(token_file), "--count", "9", "--interval", "0",
        "--defect-rate", "0", "--dim-after", "3", "--dim", "0.5", "--blur-after", "6", "--blur", "3",
    )  # fmt: skip
    done = Inspection.objects.filter(station=camera.station, status="done")
    wait_until(lambda: done.count() == 9, timeout_s=60, what="the worker scoring the simulated parts")

    scores = [inspection.scores for inspection in done.order_by("part__serial")]
    brightness = [row["brightness"] for row in scores]
    sharpness = [row["sharpness"] for row in scores]
    assert max(brightness[3:]) < 0.65 * min(brightness[:3])  # the lamp failed after 3 parts
    assert max(sharpness[6:]) < 0.5 * min(sharpness[3:6])  # and the lens after 6


def test_the_demos_simulated_reviewer_decides_the_lines_waiting_parts_by_their_generated_truth(
    live: LiveStack, tmp_path: Path
) -> None:
    import io
    import re

    from django.core.management import call_command

    from inspection.models import Verdict
    from inspection.services import station_token_issue
    from review.models import ReviewItem
    from tests.factories import PASSWORD

    project = make_project(classes=("scratch", "pit", "crack"))  # no model: every part to people
    camera = make_station(project, "Top camera")
    reviewer = make_user(project, role="reviewer")
    _, token = station_token_issue(station=camera.station)
    (tmp_path / "token").write_text(token)
    (tmp_path / "credentials").write_text(f"manager nobody x\nreviewer {reviewer.username} {PASSWORD}\n")

    out = io.StringIO()
    call_command(
        "simulate_line",
        "--url", live.base_url, "--token-file", str(tmp_path / "token"), "--count", "8", "--interval", "0.1",
        "--defect-rate", "0.5", "--review-after", "0.5", "--credentials-file", str(tmp_path / "credentials"),
        stdout=out,
    )  # fmt: skip

    verdicts = Verdict.objects.filter(project=project, is_final=True)
    assert verdicts.count() == 8 and set(verdicts.values_list("source", flat=True)) == {"human"}
    assert set(verdicts.values_list("decided_by", flat=True)) == {reviewer.pk}
    assert not ReviewItem.objects.filter(project=project, status__in=["open", "claimed"]).exists()
    # What it drew is what it decided: each failed part's class is the defect it drew.
    drawn = dict(re.findall(r"^(SIM-\S+) \((\w+)\) -> 202$", out.getvalue(), re.MULTILINE))
    decided = {
        v.part.serial: (v.defect_class.name if v.defect_class else "good") for v in verdicts.select_related("part")
    }
    assert decided == drawn and "good" in drawn.values() and set(drawn.values()) - {"good"}
