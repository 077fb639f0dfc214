"""Synthetic defects painted onto good parts: exact masks, reproducible from a seed."""

from __future__ import annotations

import numpy as np
import pytest

from workers.ml.synthetic import FAMILIES, synthesize_defect


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
