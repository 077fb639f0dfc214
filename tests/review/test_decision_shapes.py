"""A reviewer may correct the defect's box or outline; geometry is checked before it is kept."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from annotation.models import Annotation
from inspection.services import inspection_run
from review.models import ReviewItem
from tests.factories import make_project, make_station, make_user, part_jpeg, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def item_and_reviewer() -> tuple[ReviewItem, APIClient]:
    project = make_project()
    station = make_station(project)
    posted: Any = APIClient().post(
        "/api/v1/inspections", {"part_serial": "SH-1", "image": upload(part_jpeg())}, format="multipart",
        headers=station.auth,
    )  # fmt: skip
    inspection_run(inspection_id=posted.json()["id"])
    reviewer = APIClient()
    reviewer.force_authenticate(make_user(project))
    return ReviewItem.objects.get(part__serial="SH-1"), reviewer


def decide(client: APIClient, item: ReviewItem, shapes: Any) -> Any:
    crack = item.project.defect_classes.get(name="crack")
    body = {"outcome": "fail", "defect_class": crack.pk, "comment": "outline fixed", "shapes": shapes}
    # Python's encoder writes NaN and Infinity literally, as a hostile client would.
    raw = json.dumps(body, allow_nan=True)
    return client.post(f"/api/v1/review-items/{item.pk}/decide", raw, content_type="application/json")


def test_a_corrected_box_and_polygon_become_part_of_the_training_label(item_and_reviewer: Any) -> None:
    item, reviewer = item_and_reviewer
    shapes = [{"type": "box", "x": 10, "y": 12, "width": 20, "height": 8},
              {"type": "polygon", "points": [[1, 1], [30, 2], [15, 40]]}]  # fmt: skip

    response = decide(reviewer, item, shapes)

    assert response.status_code == 201
    label = Annotation.objects.get(review_item=item)
    assert [shape["type"] for shape in label.shapes] == ["box", "polygon"]
    assert label.shapes[1]["points"] == [[1.0, 1.0], [30.0, 2.0], [15.0, 40.0]]


@pytest.mark.parametrize(
    "shapes",
    [
        [{"type": "box", "x": 90, "y": 0, "width": 50, "height": 5}],  # leaves the 96 px image
        [{"type": "polygon", "points": [[1, 1], [2, float("nan")], [3, 3]]}],
        [{"type": "polygon", "points": [[1, 1], [2, 1e309], [3, 3]]}],
        [{"type": "polygon", "points": [[1, 1]] * 200_001}],
        [{"type": "polygon", "points": [[[[[1]]]], [2, 2], [3, 3]]}],
        [{"type": "circle", "r": 3}],
        "not a list",
    ],
    ids=["outside", "nan", "infinite", "too-many-points", "deep-nesting", "unknown-type", "not-a-list"],
)
def test_bad_geometry_is_refused_and_nothing_is_decided(item_and_reviewer: Any, shapes: Any) -> None:
    item, reviewer = item_and_reviewer

    response = decide(reviewer, item, shapes)

    assert response.status_code == 400
    item.refresh_from_db()
    assert item.status == "open" and not Annotation.objects.exists()


def test_a_million_point_outline_is_refused_before_it_is_decoded(item_and_reviewer: Any) -> None:
    item, reviewer = item_and_reviewer

    response = decide(reviewer, item, [{"type": "polygon", "points": [[1, 1]] * 1_000_000}])

    # The parser's reason, from counting brackets in the raw bytes: the body never became
    # a million Python lists for the shape validator to count.
    assert response.status_code == 400
    assert "holds more than" in response.json()["detail"]
    item.refresh_from_db()
    assert item.status == "open"
