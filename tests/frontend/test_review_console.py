"""The review console in a real browser: parts appear live, claims vanish from other
screens, decisions are made from the keyboard and can be undone in the grace period."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from inspection.models import Verdict
from review.models import ReviewItem
from tests.conftest import LiveStack, wait_until
from tests.factories import make_project, make_station, make_user, part_jpeg

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = "<img src=x onerror=alert(1)>"


def post_part(live: LiveStack, station: Any, serial: str, seed: int = 0) -> int:
    response = requests.post(
        f"{live.base_url}/api/v1/inspections",
        headers=station.auth,
        data={"part_serial": serial, "sku": "PLATE-A"},
        files={"image": ("cam.jpg", part_jpeg(seed), "image/jpeg")},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def queue_serials(screen: Any) -> list[str]:
    return list(screen.page.locator("#queue-list .serial").all_inner_texts())


def test_a_reviewer_sees_a_new_part_appear_and_fails_it_from_the_keyboard_while_the_other_screen_drops_it(
    live: LiveStack, open_screen: Any
) -> None:
    project = make_project(classes=("crack", HOSTILE))
    station = make_station(project)
    first, second = make_user(project, role="reviewer"), make_user(project, role="reviewer")
    ana = open_screen(first, "review")
    ben = open_screen(second, "review")
    for screen in (ana, ben):
        screen.page.wait_for_selector("#live-status[data-state=live]")

    post_part(live, station, "SN-UI-1")

    # Pushed over the websocket: no reload on either screen.
    ana.page.wait_for_selector("#queue-list .queue-item >> text=SN-UI-1")
    ben.page.wait_for_selector("#queue-list .queue-item >> text=SN-UI-1")
    ana.shot("review-queue")

    ana.page.keyboard.press("n")  # claim the next part
    ana.page.wait_for_selector("#current-serial >> text=SN-UI-1")
    ben.page.wait_for_function("() => !document.querySelector('#queue-list .queue-item')")
    assert queue_serials(ben) == []
    ana.page.wait_for_selector("#viewer img.base")
    ana.shot("review-part")

    # The class named like an HTML tag is a button label, not markup.
    assert ana.page.locator("button.fail", has_text=HOSTILE).count() == 1

    crack = project.defect_classes.get(name="crack")
    ana.page.keyboard.press(str(crack.hotkey))  # fail: crack
    ana.page.wait_for_selector("#undo-bar >> text=Fail: crack")
    wait_until(lambda: Verdict.objects.filter(part__serial="SN-UI-1", is_final=True).exists(), timeout_s=20)

    verdict = Verdict.objects.get(part__serial="SN-UI-1", is_final=True)
    assert (verdict.outcome, verdict.source, verdict.defect_class_id, verdict.decided_by_id) == (
        "fail",
        "human",
        crack.pk,
        first.pk,
    )
    # ... and ran nothing.
    assert ana.page.locator("img[src=x]").count() == 0
    assert ana.dialogs == [] and ben.dialogs == []
    assert ana.errors == [] and ben.errors == []


def test_the_last_decision_can_be_undone_in_the_grace_period_and_is_never_recorded(
    live: LiveStack, open_screen: Any
) -> None:
    project = make_project()
    station = make_station(project)
    reviewer = make_user(project, role="reviewer")
    screen = open_screen(reviewer, "review")
    screen.page.wait_for_selector("#live-status[data-state=live]")
    post_part(live, station, "SN-UNDO-1", seed=1)
    screen.page.wait_for_selector("#queue-list .queue-item >> text=SN-UNDO-1")

    screen.page.keyboard.press("n")
    screen.page.wait_for_selector("#current-serial >> text=SN-UNDO-1")
    screen.page.keyboard.press("p")
    screen.page.wait_for_selector("#undo")
    # The decided part is not handed back as the next one while its decision can be undone.
    screen.page.wait_for_selector("#next-part")
    screen.page.keyboard.press("u")
    screen.page.wait_for_selector("#current-serial >> text=SN-UNDO-1")
    screen.page.wait_for_timeout(6_000)  # past the grace period: nothing was sent

    assert not Verdict.objects.filter(part__serial="SN-UNDO-1").exists()
    assert ReviewItem.objects.get(part__serial="SN-UNDO-1").status == "claimed"

    screen.page.keyboard.press("p")
    wait_until(lambda: Verdict.objects.filter(part__serial="SN-UNDO-1", outcome="pass").exists(), timeout_s=20)
    assert ReviewItem.objects.get(part__serial="SN-UNDO-1").status == "decided"


def test_the_reviewer_looks_through_every_camera_view_of_a_part(live: LiveStack, open_screen: Any) -> None:
    project = make_project()
    project.views_per_part = 2
    project.save(update_fields=["views_per_part"])
    top, side = make_station(project, "Top"), make_station(project, "Side")
    reviewer = make_user(project, role="reviewer")
    screen = open_screen(reviewer, "review")
    screen.page.wait_for_selector("#live-status[data-state=live]")
    first = post_part(live, top, "SN-VIEWS-1", seed=2)
    second = post_part(live, side, "SN-VIEWS-1", seed=3)
    screen.page.wait_for_selector("#queue-list .queue-item >> text=SN-VIEWS-1")

    screen.page.keyboard.press("n")
    screen.page.wait_for_selector("#views button >> nth=1")
    shown = screen.page.get_attribute("#viewer img.base", "src")
    screen.page.keyboard.press("]")
    switched = screen.page.get_attribute("#viewer img.base", "src")

    assert {shown, switched} == {f"/api/v1/inspections/{first}/image", f"/api/v1/inspections/{second}/image"}
    assert screen.page.locator("#views button").count() == 2
    assert ReviewItem.objects.filter(part__serial="SN-VIEWS-1").count() == 1


def test_the_reviewer_toggles_the_models_heatmap_over_the_part_and_sees_the_region_they_looked_at(
    live: LiveStack, open_screen: Any, register: Any
) -> None:
    from inspection.models import ModelVersion, Project
    from inspection.services import station_set_region

    project = make_project()
    register(project, "anomaly", status=ModelVersion.Status.DEPLOYED)
    # Every part to a person, so the heatmap is on the reviewer's screen.
    Project.objects.filter(pk=project.pk).update(auto_pass_threshold=0.0, auto_fail_threshold=1.0, audit_rate=0.0)
    station = make_station(project)
    station_set_region(station=station.station, region={"x": 0.25, "y": 0.0, "width": 0.5, "height": 1.0})
    reviewer = make_user(project, role="reviewer")
    screen = open_screen(reviewer, "review")
    page = screen.page
    page.wait_for_selector("#live-status[data-state=live]")
    post_part(live, station, "SN-HEAT-1", seed=4)
    page.wait_for_selector("#queue-list .queue-item >> text=SN-HEAT-1", timeout=60_000)

    page.keyboard.press("n")
    page.wait_for_selector("#current-serial >> text=SN-HEAT-1")
    # The score routing applied its thresholds to, beside what each model said.
    from inspection.models import Inspection

    routing_score = Inspection.objects.get(part__serial="SN-HEAT-1").scores["defect_score"]
    row = page.locator("table.scores tr", has_text="Routing score").inner_text()
    assert f"{routing_score * 100:.1f} %" in row
    page.wait_for_selector("#toggle-heatmap:not([disabled])")
    page.keyboard.press("h")
    page.wait_for_function(
        "() => { const img = document.querySelector('#overlay-heatmap'); return img && img.naturalWidth > 0; }"
    )
    assert page.get_attribute("#toggle-heatmap", "aria-pressed") == "true"
    # The station's inspection region, outlined in the 96 px image's own coordinates.
    outline = page.locator("#region-outline rect")
    placed = [outline.get_attribute(name) for name in ("x", "y", "width", "height")]
    assert placed == ["24", "0", "48", "96"]
    assert page.get_attribute("#region-outline", "viewBox") == "0 0 96 96"
    screen.shot("review-heatmap")
    page.keyboard.press("h")
    page.wait_for_selector("#overlay-heatmap", state="detached")
    assert screen.errors == []
