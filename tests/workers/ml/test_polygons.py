"""Polygons from the annotation tool and pixel masks convert into each other faithfully."""

from __future__ import annotations

import numpy as np
import pytest

from workers.ml.polygons import rasterize_polygons, trace_polygons


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a > 0) & (b > 0)).sum() / max(((a > 0) | (b > 0)).sum(), 1))


@pytest.mark.parametrize(
    "polygons",
    [
        [[(10.0, 10.0), (50.0, 12.0), (45.0, 40.0), (12.0, 35.0)]],
        [[(5.5, 5.5), (20.25, 5.5), (20.25, 30.75)], [(60.0, 60.0), (90.0, 62.0), (75.0, 95.0)]],
        [[(30.0 + 20 * np.cos(t), 50.0 + 20 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 40, endpoint=False)]],
    ],
)
def test_polygon_rasterised_then_traced_returns_the_same_region(polygons: list[list[tuple[float, float]]]) -> None:
    # given a mask rasterised from polygons
    mask = rasterize_polygons(polygons, (100, 100))
    # when it is traced back and rasterised again
    traced = trace_polygons(mask)
    again = rasterize_polygons(traced, (100, 100))
    # then the region is the same pixel for pixel, and one polygon per region comes back
    assert set(np.unique(mask)) == {0, 255}
    assert _iou(mask, again) == 1.0
    assert len(traced) == len(polygons)


def test_traced_polygon_stays_within_a_pixel_of_the_drawn_one() -> None:
    polygon = [(20.0, 20.0), (80.0, 20.0), (80.0, 70.0), (20.0, 70.0)]
    traced = trace_polygons(rasterize_polygons([polygon], (100, 100)), epsilon=1.0)
    assert len(traced) == 1
    for x, y in traced[0]:
        assert min(abs(x - 20), abs(x - 80)) <= 1.0 or min(abs(y - 20), abs(y - 70)) <= 1.0


def test_specks_below_min_area_are_not_traced() -> None:
    mask = np.zeros((50, 50), np.uint8)
    mask[10, 10] = 255
    mask[20:30, 20:30] = 255
    assert len(trace_polygons(mask, min_area=4.0)) == 1


def test_degenerate_polygons_rasterise_to_nothing() -> None:
    assert rasterize_polygons([[(1.0, 1.0), (5.0, 5.0)]], (10, 10)).sum() == 0
