"""Bad-inputs case 20 across every page: defect class, line and station names that hold HTML
or script URLs are shown as the characters they are, run nothing and add no element, in the
review console, the dashboard and its charts, and the training view."""

from __future__ import annotations

from typing import Any

import pytest

from inspection.models import ModelVersion
from inspection.services import station_create, station_token_issue
from tests.conftest import LiveStack
from tests.factories import make_project, make_user
from tests.frontend.test_dashboard import record_verdicts
from tests.frontend.test_review_console import post_part

pytestmark = pytest.mark.django_db(transaction=True)

TAG = '<img src=x onerror="alert(1)">'
SCRIPT = "<script>alert(2)</script>"
URL = "javascript:alert(3)"


class _Station:
    def __init__(self, token: str) -> None:
        self.auth = {"Authorization": f"Station {token}"}


def assert_inert(screen: Any) -> None:
    page = screen.page
    assert page.locator("img[src=x], img[src='x']").count() == 0
    assert page.locator("script:not([src])").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.evaluate("() => window.__pwned === undefined")
    assert screen.dialogs == [] and screen.errors == []


def test_hostile_names_stay_inert_text_on_every_page(live: LiveStack, open_screen: Any) -> None:
    project = make_project(classes=(TAG, SCRIPT, URL))
    station = station_create(project=project, line_name=SCRIPT, station_name=TAG)
    _, token = station_token_issue(station=station)
    record_verdicts(project, [("fail", TAG, "Line A"), ("fail", SCRIPT, URL), ("pass", None, URL)])
    ModelVersion.objects.create(
        project=project,
        kind="classifier",
        status="ready",
        metrics={
            "accuracy": 0.5,
            "f1": {"good": 1.0, TAG: 0.5, SCRIPT: 0.25},
            "confusion": {"labels": ["good", TAG, SCRIPT], "matrix": [[3, 0, 0], [0, 1, 1], [0, 1, 1]]},
        },
    )
    manager = make_user(project, role="manager")

    review = open_screen(manager, "review")
    review.page.wait_for_selector("#live-status[data-state=live]")
    post_part(live, _Station(token), "SN-HOSTILE")  # serials are pattern-checked at the API
    review.page.wait_for_selector("#queue-list .queue-item")
    review.page.keyboard.press("n")
    review.page.wait_for_selector("#current-serial")
    assert f"{SCRIPT} / {TAG}" in review.page.inner_text("#current")
    assert review.page.locator("button.fail", has_text=SCRIPT).count() == 1
    assert review.page.locator("button.fail", has_text=URL).count() == 1
    review.shot("hostile-review")
    assert_inert(review)

    dashboard = open_screen(manager, "dashboard")
    dashboard.page.wait_for_selector("#chart-pareto canvas")
    dashboard.page.wait_for_selector("#model-versions")
    dashboard.page.select_option("#filter-group_by", "station")
    dashboard.page.click("#apply-filters")
    dashboard.page.wait_for_selector("#chart-yield canvas")
    # Hover the charts so tooltips (rich text on canvas) render the names.
    for chart in ("#chart-pareto", "#chart-yield"):
        box = dashboard.page.locator(chart).bounding_box()
        assert box is not None
        dashboard.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        dashboard.page.wait_for_timeout(200)
    dashboard.shot("hostile-dashboard")
    assert_inert(dashboard)

    training = open_screen(manager, "training")
    training.page.wait_for_selector("#confusion")
    assert TAG in training.page.locator("#confusion thead").inner_text()
    assert SCRIPT in training.page.locator("#confusion thead").inner_text()
    training.shot("hostile-training")
    assert_inert(training)

    settings = open_screen(manager, "settings")
    settings.page.wait_for_selector(f"[data-station='{station.pk}'] h3")
    assert f"{SCRIPT} / {TAG}" in settings.page.inner_text(f"[data-station='{station.pk}'] h3")
    settings.shot("hostile-settings")
    assert_inert(settings)
