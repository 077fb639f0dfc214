"""Suggestions: pre-labels read from what the models stored, and the GrabCut assistant."""

from __future__ import annotations

import io
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from annotation.masks import rle_decode, rle_encode
from inspection.models import Inspection
from inspection.storage import save_png
from tests.annotation.conftest import Studio, jpeg_of, post_json

pytestmark = pytest.mark.django_db


def test_prelabels_of_a_cold_start_image_are_empty(studio: Studio) -> None:
    task = studio.task()

    response = studio.client(studio.annotator).get(f"/api/v1/label-tasks/{task.pk}/prelabels")

    assert response.status_code == 200
    assert response.json() == {"model_version": None, "outcome": None, "defect_class": None,
                               "probabilities": None, "shapes": []}  # fmt: skip


def test_prelabels_come_from_the_stored_scores_and_the_traced_segmenter_mask(studio: Studio) -> None:
    task = studio.task()
    inspection = task.inspection
    mask = np.zeros((48, 48), dtype=np.uint8)  # the segmenter's mask, at half the image's size
    cv2.circle(mask, (24, 20), 10, 255, thickness=-1)
    Inspection.objects.filter(pk=inspection.pk).update(
        model_version="classifier:3,segmenter:4",
        scores={"probabilities": {"good": 0.1, "pit": 0.8, "scratch": 0.1}, "defect_probability": 0.9,
                "classifier_flag": True, "predicted_class": "pit", "decision": {"action": "fail"}},
        mask_file=save_png(f"masks/{inspection.pk}.png", mask),
    )  # fmt: skip

    body = studio.client(studio.annotator).get(f"/api/v1/label-tasks/{task.pk}/prelabels").json()

    assert body["model_version"] == "classifier:3,segmenter:4"
    assert (body["outcome"], body["defect_class"]) == ("fail", studio.class_id("pit"))
    assert body["probabilities"] == {"good": 0.1, "pit": 0.8, "scratch": 0.1}
    [shape] = body["shapes"]
    assert shape["type"] == "polygon" and shape["defect_class"] == studio.class_id("pit")
    points = np.asarray(shape["points"])
    assert 3 <= len(points) <= 300
    # Scaled back to the 96 px image: the circle sits around (48, 40) with radius ~20.
    assert np.allclose(points.mean(axis=0), [48, 40], atol=3)
    assert np.allclose(np.ptp(points, axis=0), [40, 40], atol=4)


def test_a_large_mask_is_simplified_to_a_few_hundred_points(studio: Studio) -> None:
    task = studio.task()
    rng = np.random.default_rng(0)
    mask = np.zeros((96, 96), dtype=np.uint8)
    for _ in range(60):  # many jagged blobs
        cv2.circle(mask, tuple(int(v) for v in rng.integers(0, 96, 2)), int(rng.integers(2, 8)), 255, -1)
    Inspection.objects.filter(pk=task.inspection_id).update(mask_file=save_png("masks/big.png", mask))

    shapes = studio.client(studio.annotator).get(f"/api/v1/label-tasks/{task.pk}/prelabels").json()["shapes"]

    assert 0 < len(shapes) <= 20
    assert sum(len(shape["points"]) for shape in shapes) <= 300


def blob_image(size: tuple[int, int] = (640, 480)) -> tuple[bytes, np.ndarray]:
    """A textured grey surface with one dark elliptical defect, and the defect's true mask."""
    width, height = size
    rng = np.random.default_rng(7)
    surface = np.clip(rng.normal(170, 12, (height, width)), 0, 255).astype(np.uint8)
    truth = np.zeros((height, width), dtype=np.uint8)
    cv2.ellipse(truth, (300, 220), (60, 35), 20, 0, 360, 1, thickness=-1)
    surface[truth > 0] = np.clip(rng.normal(60, 10, int(truth.sum())), 0, 255).astype(np.uint8)
    return jpeg_of(np.stack([surface] * 3, axis=-1)), truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def test_assist_outlines_a_dark_defect_from_a_box(studio: Studio) -> None:
    image, truth = blob_image()
    task = studio.task(image=image)
    pit = studio.class_id("pit")

    response = post_json(
        studio.client(studio.annotator), f"/api/v1/label-tasks/{task.pk}/assist",
        {"box": [225, 170, 150, 100], "defect_class": pit},
    )  # fmt: skip

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["mask"]["size"] == [480, 640]
    found = rle_decode(body["mask"])
    assert iou(found, truth) > 0.7
    assert body["shapes"] and all(shape["defect_class"] == pit and shape["type"] == "polygon"
                                  for shape in body["shapes"])  # fmt: skip
    assert sum(body["mask"]["counts"]) == 640 * 480


def test_assist_on_a_large_image_works_on_a_bounded_region_and_maps_back(studio: Studio) -> None:
    small, small_truth = blob_image()
    big = cv2.resize(np.asarray(Image.open(io.BytesIO(small))), (2560, 1920), interpolation=cv2.INTER_LINEAR)
    truth = cv2.resize(small_truth, (2560, 1920), interpolation=cv2.INTER_NEAREST)
    task = studio.task(image=jpeg_of(big))

    response = post_json(
        studio.client(studio.annotator), f"/api/v1/label-tasks/{task.pk}/assist",
        {"box": [900, 680, 600, 400], "points": [{"x": 1200, "y": 880, "positive": True}],
         "defect_class": studio.class_id("pit")},
    )  # fmt: skip

    assert response.status_code == 200
    assert iou(rle_decode(response.json()["mask"]), truth) > 0.7


@pytest.mark.parametrize(
    "body",
    [
        {"box": [1, 1, 10], "defect_class": None},
        {"box": [1, 1, float("nan"), 10]},
        {"box": [90, 90, 50, 50]},
        {"box": [1, 1, 1, 1]},
        {"box": [1, 1, 10, 10], "points": [{"x": 5, "y": 500, "positive": True}]},
        {"box": [1, 1, 10, 10], "points": [{"x": 5, "y": 5, "positive": "yes"}]},
        {"box": [1, 1, 10, 10], "points": [{"x": 5, "y": 5, "positive": True}] * 51},
        {"box": [1, 1, 10, 10], "defect_class": 999_999},
    ],
    ids=["short-box", "nan", "outside", "tiny", "point-outside", "positive-not-bool", "too-many-points",
         "foreign-class"],
)  # fmt: skip
def test_bad_assist_requests_are_refused(studio: Studio, body: dict[str, Any]) -> None:
    task = studio.task()
    body = {"defect_class": studio.class_id("pit"), **body}

    response = post_json(studio.client(studio.annotator), f"/api/v1/label-tasks/{task.pk}/assist", body)

    assert response.status_code == 400


def test_rle_round_trips_in_column_major_order_starting_with_zeros() -> None:
    mask = np.zeros((3, 4), dtype=np.uint8)
    mask[0, 0] = mask[1, 0] = mask[2, 3] = 1

    rle = rle_encode(mask)

    assert rle == {"size": [3, 4], "counts": [0, 2, 9, 1]}
    assert (rle_decode(rle) == mask).all()
