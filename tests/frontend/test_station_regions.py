"""Stations in a real browser: a project admin draws a station's inspection region over its
latest image and saves it (audited); typed values are checked with the reason; managers see
the region but cannot change it. Admins add stations and issue (once) and revoke tokens."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from inspection.models import AuditEvent, Station
from inspection.services import station_set_region
from tests.conftest import LiveStack, wait_until
from tests.factories import make_project, make_station, make_user, part_jpeg, upload

pytestmark = pytest.mark.django_db(transaction=True)


def station_with_an_image(project: Any, name: str = "Top cam") -> Any:
    camera = make_station(project, name)
    posted = APIClient().post(
        "/api/v1/inspections",
        {"part_serial": "R-1", "image": upload(part_jpeg(2))},
        format="multipart",
        headers=camera.auth,
    )
    assert posted.status_code == 202
    return camera


def test_an_admin_draws_a_stations_region_over_its_latest_image_and_saves_it(live: LiveStack, open_screen: Any) -> None:
    project = make_project()
    camera = station_with_an_image(project)
    station_id = camera.station.pk
    screen = open_screen(make_user(project, role="admin"), "settings")
    page = screen.page
    frame = f"#station-{station_id}-frame"
    page.wait_for_selector(f"{frame}:not([hidden]) img")
    page.wait_for_function(f"() => document.querySelector('{frame} img').naturalWidth > 0")
    assert "whole frame" in (page.text_content(f"#station-{station_id}-status") or "")
    page.locator(frame).scroll_into_view_if_needed()
    box = page.locator(frame).bounding_box()
    assert box is not None

    # Drag from 10 % / 20 % to 60 % / 90 % of the image.
    page.mouse.move(box["x"] + 0.1 * box["width"], box["y"] + 0.2 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.4 * box["width"], box["y"] + 0.5 * box["height"], steps=4)
    page.mouse.move(box["x"] + 0.6 * box["width"], box["y"] + 0.9 * box["height"], steps=4)
    page.mouse.up()
    assert page.is_visible(f"#station-{station_id}-box")
    page.click(f"#station-{station_id}-save")
    wait_until(lambda: Station.objects.get(pk=station_id).inspection_region is not None, timeout_s=10, what="save")

    region = Station.objects.get(pk=station_id).inspection_region
    assert region == pytest.approx({"x": 0.1, "y": 0.2, "width": 0.5, "height": 0.7}, abs=0.02)
    assert AuditEvent.objects.filter(action="station.region_changed", object_id=str(station_id)).count() == 1
    page.wait_for_function(
        f"() => document.querySelector('#station-{station_id}-status').textContent.includes('to 60 % across')"
    )
    page.locator(f"#station-{station_id}-frame").scroll_into_view_if_needed()
    screen.shot("settings-station-region")

    # A typed region outside the image is refused in the browser, with the reason.
    page.fill(f"#station-{station_id}-x", "70")
    page.click(f"#station-{station_id}-save")
    page.wait_for_function(
        f"() => document.querySelector('#station-{station_id}-message').textContent.includes('inside the image')"
    )
    assert Station.objects.get(pk=station_id).inspection_region == region

    page.click(f"#station-{station_id}-clear")
    wait_until(lambda: Station.objects.get(pk=station_id).inspection_region is None, timeout_s=10, what="clear")
    assert screen.dialogs == [] and screen.errors == []


def test_a_manager_sees_the_region_but_cannot_change_it(live: LiveStack, open_screen: Any) -> None:
    project = make_project()
    camera = station_with_an_image(project)
    station_set_region(station=camera.station, region={"x": 0.25, "y": 0, "width": 0.5, "height": 1})
    screen = open_screen(make_user(project, role="manager"), "settings", bypass_csp=True)
    page = screen.page
    station_id = camera.station.pk
    page.wait_for_selector(f"#station-{station_id}-frame:not([hidden]) img")

    assert "from 25 % to 75 % across" in (page.text_content(f"#station-{station_id}-status") or "")
    assert page.is_visible(f"#station-{station_id}-box")
    assert page.locator(f"#station-{station_id}-save").count() == 0
    assert page.is_disabled(f"#station-{station_id}-x")
    assert [v["id"] for v in screen.axe()] == []
    assert screen.dialogs == [] and screen.errors == []


def test_an_admin_adds_a_station_issues_its_token_once_and_revokes_it(live: LiveStack, open_screen: Any) -> None:
    import requests

    project = make_project()
    screen = open_screen(make_user(project, role="admin"), "settings")
    page = screen.page
    page.wait_for_selector("#stations >> text=No stations yet.")

    page.fill("#new-station-line", "Line 2")
    page.fill("#new-station-name", "Side cam")
    page.click("#new-station button[type=submit]")
    wait_until(lambda: Station.objects.filter(project=project, name="Side cam").exists(), timeout_s=10, what="station")
    station = Station.objects.get(project=project, name="Side cam")
    card = f"[data-station='{station.pk}']"
    page.wait_for_selector(f"{card} h3 >> text=Line 2 / Side cam")
    page.click(f"{card} details.tokens summary")
    page.fill(f"#station-{station.pk}-token-label", "camera 42")
    page.click(f"#station-{station.pk}-issue-token")
    page.wait_for_selector(f"#station-{station.pk}-new-token")
    token = page.text_content(f"#station-{station.pk}-new-token") or ""
    page.wait_for_selector(f"#station-{station.pk}-tokens tr >> text=camera 42")

    auth = {"Authorization": f"Station {token}"}
    assert requests.get(f"{live.base_url}/api/v1/inspections", headers=auth, timeout=10).status_code == 200
    assert token not in (page.text_content(f"#station-{station.pk}-tokens") or "")  # the list shows prefixes only

    page.click(f"#station-{station.pk}-tokens button.revoke-token")
    page.wait_for_selector(f"#station-{station.pk}-tokens tr >> text=revoked")
    assert requests.get(f"{live.base_url}/api/v1/inspections", headers=auth, timeout=10).status_code == 401
    assert AuditEvent.objects.filter(project=project, action="station_token.revoked").count() == 1
    assert screen.dialogs == [] and screen.errors == []


def test_an_admin_draws_an_ignore_zone_saves_it_and_removes_it(live: LiveStack, open_screen: Any) -> None:
    project = make_project()
    camera = station_with_an_image(project)
    station_id = camera.station.pk
    screen = open_screen(make_user(project, role="admin"), "settings")
    page = screen.page
    frame = f"#station-{station_id}-frame"
    page.wait_for_selector(f"{frame}:not([hidden]) img")
    page.wait_for_function(f"() => document.querySelector('{frame} img').naturalWidth > 0")
    page.locator(frame).scroll_into_view_if_needed()
    box = page.locator(frame).bounding_box()
    assert box is not None

    page.select_option(f"#station-{station_id}-draw", "zone")
    page.mouse.move(box["x"] + 0.7 * box["width"], box["y"] + 0.05 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.95 * box["width"], box["y"] + 0.25 * box["height"], steps=6)
    page.mouse.up()
    assert page.locator(f"#station-{station_id}-zone-layer .zone-box").count() == 1
    page.click(f"#station-{station_id}-save")
    wait_until(lambda: len(Station.objects.get(pk=station_id).ignore_zones) == 1, timeout_s=10, what="zone saved")

    (zone,) = Station.objects.get(pk=station_id).ignore_zones
    assert zone == pytest.approx({"x": 0.7, "y": 0.05, "width": 0.25, "height": 0.2}, abs=0.02)
    assert Station.objects.get(pk=station_id).inspection_region is None  # drawing a zone leaves the region
    page.wait_for_function(
        f"() => document.querySelector('#station-{station_id}-status').textContent.includes('1 ignore zone')"
    )
    screen.shot("settings-ignore-zone")

    page.click(f"#station-{station_id}-zones button.remove-zone")
    page.click(f"#station-{station_id}-save")
    wait_until(lambda: Station.objects.get(pk=station_id).ignore_zones == [], timeout_s=10, what="zone removed")
    assert screen.dialogs == [] and screen.errors == []


def test_the_station_card_says_whether_the_deployed_models_decide_its_parts_through_its_view(
    live: LiveStack, open_screen: Any, register: Any
) -> None:
    from inspection.models import Calibration, ModelVersion

    project = make_project()
    register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    camera = station_with_an_image(project)
    station_id = camera.station.pk
    screen = open_screen(make_user(project, role="admin"), "settings")
    page = screen.page
    said = f"#station-{station_id}-models"
    page.wait_for_selector(f"{said}:not([hidden])")
    assert "trained on this view" in (page.text_content(said) or "")

    for side, value in (("x", "50"), ("y", "0"), ("width", "50"), ("height", "100")):
        page.fill(f"#station-{station_id}-{side}", value)
    page.click(f"#station-{station_id}-save")
    page.wait_for_function(f"() => document.querySelector('{said}').textContent.includes('not trained on this view')")
    # The change queued the station's calibration on the new view; the worker fits it (no
    # decided parts yet here, so it cannot let the models pass anything).
    wait_until(lambda: Calibration.objects.filter(station_id=station_id).exists(), timeout_s=60, what="calibration")
    page.reload()
    page.wait_for_selector(f"{said}:not([hidden])")
    page.wait_for_function(f"() => document.querySelector('{said}').textContent.includes('not enough')")
    assert "Calibrated on 0 decided parts" in (page.text_content(said) or "")
    assert screen.dialogs == [] and screen.errors == []
