"""Synthetic defects painted onto good parts, and real ones transplanted: exact masks,
reproducible from a seed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from workers.ml.synthetic import FAMILIES, synthesize_defect, transplant_defect


def _good_part(seed: int) -> np.ndarray:
    """A mottled grey surface like a ground tile, 96 x 128."""
    rng = np.random.default_rng(seed)
    base = 120 + rng.normal(0, 6, (96, 128)).astype(np.float32)
    return np.repeat(np.clip(base, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_changes_the_image_where_its_mask_says(family: str) -> None:
    image, donor = _good_part(0), _good_part(1) // 2  # a darker donor, so pasted texture shows
    for seed in range(10):
        out, mask = synthesize_defect(image, np.random.default_rng(seed), donors=[donor], families=[family])
        assert out.shape == image.shape and out.dtype == np.uint8
        assert mask.shape == image.shape[:2] and set(np.unique(mask)) <= {0, 1}
        assert 0 < mask.sum() < 0.5 * mask.size
        changed = np.abs(out.astype(np.int16) - image.astype(np.int16)).max(axis=2)
        # The defect is where the mask is: pixels outside it are (nearly) untouched.
        assert changed[mask == 1].mean() > 4 * max(changed[mask == 0].mean(), 0.5)


def test_the_same_seed_paints_the_same_defect_and_another_seed_another() -> None:
    image, donors = _good_part(0), [_good_part(1), _good_part(2)]
    first = synthesize_defect(image, np.random.default_rng(7), donors)
    again = synthesize_defect(image, np.random.default_rng(7), donors)
    other = synthesize_defect(image, np.random.default_rng(8), donors)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_the_input_image_is_left_as_it_was() -> None:
    image = _good_part(0)
    before = image.copy()
    synthesize_defect(image, np.random.default_rng(0))
    assert np.array_equal(image, before)


def test_an_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown synthetic defect family 'dent'"):
        synthesize_defect(_good_part(0), np.random.default_rng(0), families=["dent"])


def _donor_with_a_hole(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A brighter part (gain 1.5) with a dark 10 x 10 hole at rows 20-29, columns 40-49."""
    donor = np.clip(_good_part(seed).astype(np.float32) * 1.5, 0, 255).astype(np.uint8)
    mask = np.zeros(donor.shape[:2], np.uint8)
    mask[20:30, 40:50] = 1
    donor[mask == 1] = 10
    return donor, mask


def test_a_transplanted_defect_lands_where_its_new_mask_says() -> None:
    image = _good_part(0)
    donor, donor_mask = _donor_with_a_hole(1)
    for seed in range(10):
        out, mask = transplant_defect(image, donor, donor_mask, np.random.default_rng(seed), keep_place=0.0)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1} and mask.sum() == donor_mask.sum()
        assert out[mask == 1].mean() < 20  # the hole came along
        far = cv2.dilate(mask, np.ones((15, 15), np.uint8)) == 0
        assert np.array_equal(out[far], image[far])  # nothing else moved


def test_a_transplant_is_matched_to_the_good_parts_brightness_on_its_rim() -> None:
    image = _good_part(0)  # ~120 grey; the donor's surface is ~180
    donor, donor_mask = _donor_with_a_hole(1)
    out, mask = transplant_defect(image, donor, donor_mask, np.random.default_rng(0), keep_place=1.0)
    assert np.array_equal(mask, donor_mask)  # kept in place
    rim = (cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0) & (mask == 0)
    assert abs(float(out[rim].mean()) - float(image[rim].mean())) < 8


def test_a_transplant_needs_a_marked_donor_of_the_same_size() -> None:
    image = _good_part(0)
    donor, donor_mask = _donor_with_a_hole(1)
    with pytest.raises(ValueError, match="marks nothing"):
        transplant_defect(image, donor, np.zeros_like(donor_mask), np.random.default_rng(0))
    with pytest.raises(ValueError, match="share their size"):
        transplant_defect(image[:50], donor, donor_mask, np.random.default_rng(0))
