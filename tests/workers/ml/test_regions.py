"""Inspection regions: the models learn from and look at only the part of the frame a
station's region names; what they draw goes back into the whole frame."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from workers.ml.regions import blank_zones, crop, parse_region, parse_zones, paste, region_box, zero_zones
from workers.ml.trainers.common import load_images, load_masks
from workers.ml.training import RunControl
from workers.ml.types import Sample


def test_a_region_is_read_from_named_fractions_or_four_numbers() -> None:
    assert parse_region({"x": 0.1, "y": 0.2, "width": 0.5, "height": 0.25}) == (0.1, 0.2, 0.5, 0.25)
    assert parse_region([0, 0, 1, 1]) == (0.0, 0.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"x": 0.5, "y": 0, "width": 0.6, "height": 1}, "inside the image"),
        ({"x": -0.1, "y": 0, "width": 0.5, "height": 0.5}, "at least 0"),
        ({"x": 0, "y": 1, "width": 0.5, "height": 0.5}, "below 1"),
        ({"x": 0, "y": 0, "width": 0.001, "height": 0.5}, "at least 0.02"),
        ({"x": math.nan, "y": 0, "width": 0.5, "height": 0.5}, "x must be a finite number"),
        ({"x": math.inf, "y": 0, "width": 0.5, "height": 0.5}, "x must be a finite number"),
        ({"x": "0", "y": 0, "width": 0.5, "height": 0.5}, "x must be a finite number"),
        ({"x": True, "y": 0, "width": 0.5, "height": 0.5}, "x must be a finite number"),
        ({"x": 0, "y": 0, "width": 0.5}, "missing: height"),
        ({"x": 0, "y": 0, "width": 0.5, "height": 0.5, "angle": 3}, "unknown: angle"),
        ([0, 0, 1], "a region is"),
        ("0,0,1,1", "a region is"),
    ],
)
def test_a_region_that_is_not_a_rectangle_inside_the_image_is_refused_with_the_reason(value: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_region(value)


def test_a_regions_pixel_box_rounds_outwards_and_stays_inside_the_image() -> None:
    assert region_box((100, 200), (0.25, 0.5, 0.5, 0.5)) == (50, 50, 100, 150)
    assert region_box((10, 10), (0.33, 0.33, 0.34, 0.34)) == (3, 3, 7, 7)  # 3.3..6.7 -> 3..7
    assert region_box((3, 3), (0.9, 0.9, 0.05, 0.05)) == (2, 2, 3, 3)  # at least one pixel
    assert region_box((100, 200), None) == (0, 0, 100, 200)


def test_a_map_drawn_on_the_crop_goes_back_to_its_place_in_the_whole_frame() -> None:
    image = np.arange(60 * 80, dtype=np.int64).reshape(60, 80)
    region = (0.25, 0.5, 0.5, 0.25)
    part = crop(image, region)
    box = region_box(image.shape, region)

    whole = paste(part, box, (60, 80))

    top, left, bottom, right = box
    assert part.shape == (15, 40)
    assert np.array_equal(whole[top:bottom, left:right], image[top:bottom, left:right])
    outside = np.ones(whole.shape, dtype=bool)
    outside[top:bottom, left:right] = False
    assert (whole[outside] == 0).all()
    assert crop(image, None) is image
    with pytest.raises(ValueError, match="does not fit"):
        paste(part[:, :10], box, (60, 80))


def two_halves(tmp_path: Path) -> Sample:
    """A 64x128 frame: a plain grey left half, a dark defect (and its mask) in the right half."""
    image = np.full((64, 128, 3), 120, dtype=np.uint8)
    mask = np.zeros((64, 128), dtype=np.uint8)
    image[20:40, 90:110] = 20
    mask[20:40, 90:110] = 255
    cv2.imwrite(str(tmp_path / "part.png"), image)
    cv2.imwrite(str(tmp_path / "part_mask.png"), mask)
    return Sample(image_path=tmp_path / "part.png", label="pit", mask_path=tmp_path / "part_mask.png")


def test_training_images_and_masks_are_cut_to_the_samples_region(tmp_path: Path) -> None:
    whole = two_halves(tmp_path)
    left = dataclasses.replace(whole, region=(0.0, 0.0, 0.5, 1.0))
    right = dataclasses.replace(whole, region=(0.5, 0.0, 0.5, 1.0))
    control = RunControl(None, None)

    images = load_images([whole, left, right], (64, 64), control)
    masks = load_masks([whole, left, right], (64, 64), "good")

    assert (images[1] == 120).all() and masks[1].sum() == 0  # the defect is outside the left half
    assert images[2].min() == 20 and masks[2].sum() == 20 * 20  # the right half at its own scale
    assert masks[0].sum() == 10 * 20  # the whole frame squeezed to 64x64 halves the defect's width


def test_ignore_zones_are_a_list_of_regions_refused_with_the_zone_named() -> None:
    assert parse_zones([[0, 0, 0.5, 0.5], {"x": 0.5, "y": 0.5, "width": 0.5, "height": 0.5}]) == (
        (0.0, 0.0, 0.5, 0.5),
        (0.5, 0.5, 0.5, 0.5),
    )
    assert parse_zones([]) == ()
    with pytest.raises(ValueError, match="a list"):
        parse_zones({"x": 0, "y": 0, "width": 1, "height": 1})
    with pytest.raises(ValueError, match=r"zone 2: .*inside the image"):
        parse_zones([[0, 0, 0.5, 0.5], [0.8, 0, 0.5, 0.5]])
    with pytest.raises(ValueError, match="at most 16"):
        parse_zones([[0, 0, 0.5, 0.5]] * 17)


def test_a_zone_is_filled_with_the_colour_around_it_and_nothing_else_changes() -> None:
    image = np.full((40, 40, 3), 100, dtype=np.uint8)
    image[10:20, 10:20] = (10, 200, 30)  # a printed code inside the zone
    zone = (0.25, 0.25, 0.25, 0.25)  # pixels 10..20

    blanked = blank_zones(image, [zone])

    assert (blanked[10:20, 10:20] == 100).all()
    assert np.array_equal(np.delete(blanked, np.s_[10:20], axis=0), np.delete(image, np.s_[10:20], axis=0))
    assert (image[10:20, 10:20] == (10, 200, 30)).all()  # the input is left as it was
    assert blank_zones(image, []) is image
    assert zero_zones(np.full((40, 40), 255, dtype=np.uint8), [zone])[10:20, 10:20].max() == 0


def test_training_images_and_masks_are_blanked_and_zeroed_in_the_samples_ignore_zones(tmp_path: Path) -> None:
    whole = two_halves(tmp_path)
    zoned = dataclasses.replace(whole, ignore_zones=((0.5, 0.0, 0.5, 1.0),))  # the defect's half

    images = load_images([zoned], (64, 128), RunControl(None, None))
    masks = load_masks([zoned], (64, 128), "good")

    assert (images[0] == 120).all()  # the dark square is gone, filled with the grey around it
    assert masks[0].sum() == 0  # and no defect is learnt from a zone
