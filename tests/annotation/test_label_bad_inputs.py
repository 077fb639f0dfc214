"""Hostile label bodies (bad-inputs case 22): each is a 400 with bounded CPU and memory, and
nothing is written."""

from __future__ import annotations

import json
import time
import tracemalloc
from typing import Any

import pytest

from annotation.models import Label, LabelRevision
from tests.annotation.conftest import Studio, put_json

pytestmark = pytest.mark.django_db


def box(class_id: int, **overrides: Any) -> dict[str, Any]:
    return {"type": "box", "x": 1, "y": 1, "width": 10, "height": 10, "defect_class": class_id, **overrides}


def polygon(class_id: int, points: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "polygon", "points": points, "defect_class": class_id, **extra}


def mask(class_id: int, size: Any, counts: Any) -> dict[str, Any]:
    return {"type": "mask", "rle": {"size": size, "counts": counts}, "defect_class": class_id}


SQUARE = [[1, 1], [20, 1], [20, 20], [1, 20]]
PIXELS = 96 * 96  # the generated parts are 96 x 96


@pytest.mark.parametrize(
    "make_shapes",
    [
        lambda c: [box(c, x=90, width=50)],
        lambda c: [box(c, x=-1)],
        lambda c: [box(c, width=float("nan"))],
        lambda c: [polygon(c, [[1, 1], [2, float("inf")], [3, 3]])],
        lambda c: [polygon(c, [[1, 1], [2, float("-inf")], [3, 3]])],
        lambda c: [polygon(c, [[1, 1], [2, 1e309], [3, 3]])],
        lambda c: [polygon(c, [[1, 1], [2, 2]])],
        lambda c: [polygon(c, [[1, 1], [2, "2"], [3, 3]])],
        lambda c: [polygon(c, [[1, 1], [2, True], [3, 3]])],
        lambda c: [polygon(c, SQUARE, holes=[[[1, 1], [2, 2]]])],
        lambda c: [polygon(c, SQUARE, holes="none")],
        lambda c: [polygon(c, [[1, 1]] * 10_001)],
        lambda c: [polygon(c, [[1, 1]] * 9_000) for _ in range(23)],
        lambda c: [box(c)] * 5_001,
        lambda c: [mask(c, [96, 96], [PIXELS - 1])],
        lambda c: [mask(c, [96, 95], [96 * 95])],
        lambda c: [mask(c, [96, 96], [PIXELS + 5, -5])],
        lambda c: [mask(c, [96, 96], [PIXELS - 1, True])],
        lambda c: [mask(c, [96, 96], [PIXELS - 0.5, 0.5])],
        lambda c: [mask(c, [96, 96], [10**30, 1])],
        lambda c: [mask(c, [96, 96], [])],
        lambda c: [{"type": "mask", "rle": {"size": [96, 96], "counts": [PIXELS], "extra": 1}, "defect_class": c}],
        lambda c: [{**box(c), "defect_class": None}],
        lambda c: [{**box(c), "defect_class": 999_999}],
        lambda c: [{**box(c), "defect_class": True}],
        lambda c: [{"type": "circle", "r": 3, "defect_class": c}],
        lambda c: ["box"],
        lambda c: "not a list",
    ],
    ids=[
        "box-outside", "box-negative", "nan", "infinity", "minus-infinity", "overflow-to-infinity",
        "two-points", "string-coordinate", "bool-coordinate", "short-hole", "holes-not-a-list",
        "ring-over-10000", "over-200000-points", "over-5000-shapes", "rle-sum-short", "rle-wrong-size",
        "rle-negative", "rle-bool", "rle-float", "rle-huge", "rle-empty", "rle-extra-key",
        "shape-without-class", "shape-class-of-no-project", "shape-class-bool", "unknown-type",
        "shape-not-object", "shapes-not-a-list",
    ],
)  # fmt: skip
def test_bad_shapes_are_refused_and_nothing_is_written(studio: Studio, make_shapes: Any) -> None:
    task = studio.task()
    body = {"version": 0, "outcome": "fail", "defect_class": None, "shapes": make_shapes(studio.class_id("pit"))}

    response = put_json(studio.client(studio.annotator), f"/api/v1/label-tasks/{task.pk}/label", body)

    assert response.status_code == 400, response.content
    assert not Label.objects.exists() and not LabelRevision.objects.exists()


def test_a_shape_class_of_another_project_is_refused(studio: Studio) -> None:
    from tests.factories import make_project

    foreign = make_project().defect_classes.first()
    assert foreign is not None
    task = studio.task()
    body = {"version": 0, "outcome": "fail", "defect_class": None, "shapes": [box(foreign.pk)]}

    response = put_json(studio.client(studio.annotator), f"/api/v1/label-tasks/{task.pk}/label", body)

    assert response.status_code == 400 and not Label.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"version": 0, "outcome": "maybe"},
        {"version": -1, "outcome": "pass"},
        {"version": 0, "outcome": "pass", "defect_class": "scratch"},
        {"version": 0, "outcome": "pass", "shapes": [{"type": "box"}], "project": 5},
        {"outcome": "pass"},
    ],
    ids=["outcome", "negative-version", "class-by-name", "unknown-field", "no-version"],
)
def test_a_bad_envelope_is_refused(studio: Studio, body: dict[str, Any]) -> None:
    task = studio.task()

    response = put_json(studio.client(studio.annotator), f"/api/v1/label-tasks/{task.pk}/label", body)

    assert response.status_code == 400 and not Label.objects.exists()


def test_a_pass_with_a_class_or_shapes_is_refused(studio: Studio) -> None:
    task = studio.task()
    pit = studio.class_id("pit")

    answers = [
        put_json(studio.client(studio.annotator), f"/api/v1/label-tasks/{task.pk}/label", body)
        for body in (
            {"version": 0, "outcome": "pass", "defect_class": pit},
            {"version": 0, "outcome": "pass", "shapes": [box(pit)]},
        )
    ]

    assert [answer.status_code for answer in answers] == [400, 400]
    assert answers[0].json()["code"] == "invalid_label"


def raw_put(studio: Studio, task_id: int, raw: bytes) -> Any:
    return studio.client(studio.annotator).put(
        f"/api/v1/label-tasks/{task_id}/label", raw, content_type="application/json"
    )


def test_10k_deep_nesting_is_a_400_not_a_recursion_error(studio: Studio) -> None:
    task = studio.task()
    deep = b'{"version": 0, "outcome": "fail", "shapes": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"

    response = raw_put(studio, task.pk, deep)

    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]


def test_deep_nesting_hidden_behind_brackets_in_strings_is_still_a_400(studio: Studio) -> None:
    task = studio.task()
    # The string's closing brackets fool the bracket count; the decoder's own limit still holds.
    deep = b'{"x": "' + b"]" * 10_000 + b'", "shapes": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"

    response = raw_put(studio, task.pk, deep)

    assert response.status_code == 400


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_literals_are_refused_by_the_parser(studio: Studio, literal: bytes) -> None:
    task = studio.task()
    raw = b'{"version": 0, "outcome": "fail", "shapes": [{"type": "box", "x": ' + literal + b"}]}"

    response = raw_put(studio, task.pk, raw)

    assert response.status_code == 400 and "JSON parse error" in response.json()["detail"]


def test_a_million_point_polygon_is_refused_quickly_without_decoding_it(studio: Studio) -> None:
    task = studio.task()
    pit = studio.class_id("pit")
    raw = json.dumps({"version": 0, "outcome": "fail", "shapes": [polygon(pit, [[1.5, 2.5]] * 1_000_000)]}).encode()

    tracemalloc.start()
    started = time.perf_counter()
    response = raw_put(studio, task.pk, raw)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert response.status_code == 400 and "points" in response.json()["detail"]
    assert elapsed < 2.0
    # Decoding it would build ~3 million Python objects (>150 MB); the bound is a few copies of the body.
    assert peak < 4 * len(raw), f"peak {peak / 1e6:.0f} MB for a {len(raw) / 1e6:.0f} MB body"
    assert not Label.objects.exists()


def test_a_body_over_the_upload_limit_is_refused(studio: Studio, settings: Any) -> None:
    settings.LOUPE_MAX_UPLOAD_BYTES = 10_000
    task = studio.task()
    raw = json.dumps({"version": 0, "outcome": "pass", "padding": "x" * 20_000}).encode()

    response = raw_put(studio, task.pk, raw)

    assert response.status_code == 400 and "larger than" in response.json()["detail"]
