"""Drift statistics: a shift in what a station's camera delivers shows as a large PSI with a
significant KS test; sampling noise and identical distributions do not."""

from __future__ import annotations

import numpy as np
import pytest

from workers.routing.drift import (
    DRAWN_BINS,
    DRIFT,
    STABLE,
    WATCH,
    compare,
    compare_windows,
    image_stats,
    psi,
    worst,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_draws_of_the_same_distribution_are_stable(seed: int) -> None:
    rng = np.random.default_rng(seed)

    result = compare("brightness", rng.normal(120, 10, 500), rng.normal(120, 10, 500))

    assert result.level == STABLE
    assert result.psi < 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_darker_camera_is_drift(seed: int) -> None:
    rng = np.random.default_rng(seed)

    result = compare("brightness", rng.normal(120, 10, 500), rng.normal(105, 10, 500))

    assert result.level == DRIFT
    assert result.psi >= 0.25 and result.p_value < 0.01
    assert result.current_mean < result.reference_mean


def test_a_moderate_shift_is_watched() -> None:
    rng = np.random.default_rng(4)

    result = compare("contrast", rng.normal(0, 1, 2000), rng.normal(0.4, 1, 2000))

    assert result.level == WATCH
    assert 0.1 <= result.psi < 0.25


def test_a_few_parts_are_not_called_drift_however_large_their_psi() -> None:
    # Five parts each way: the PSI of the deciles is noise; the KS test says so.
    result = compare("defect_score", [0.1, 0.2, 0.3, 0.4, 0.5], [0.15, 0.25, 0.45, 0.5, 0.55])

    assert result.level == STABLE


def test_the_psi_grows_with_the_shift() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(0, 1, 3000)

    shifts = [psi(reference, rng.normal(mu, 1, 3000)) for mu in (0.0, 0.25, 0.5, 1.0)]

    assert shifts == sorted(shifts)


def test_a_constant_reference_still_compares() -> None:
    same = compare("anomaly_ratio", [0.0] * 50, [0.0] * 50)
    moved = compare("anomaly_ratio", [0.0] * 50, [1.0] * 50)

    assert same.level == STABLE and same.psi == pytest.approx(0.0)
    assert moved.level == DRIFT


def test_the_drawn_histograms_cover_both_windows_on_one_scale() -> None:
    rng = np.random.default_rng(6)

    result = compare("brightness", rng.normal(100, 5, 300), rng.normal(110, 5, 200)).as_dict()

    histogram = result["histogram"]
    assert len(histogram["edges"]) == DRAWN_BINS + 1
    assert sum(histogram["reference"]) == pytest.approx(1.0, abs=1e-3)
    assert sum(histogram["current"]) == pytest.approx(1.0, abs=1e-3)
    assert (result["reference_parts"], result["current_parts"]) == (300, 200)
    assert result["label"] == "image brightness"


def test_windows_compare_the_signals_both_carry_and_skip_missing_or_bad_values() -> None:
    reference = [{"brightness": 100.0 + i % 7, "defect_score": 0.1} for i in range(40)]
    current = [{"brightness": 100.0 + i % 7, "defect_score": None, "anomaly_ratio": 0.3} for i in range(40)]
    current.append({"brightness": float("nan")})

    results = compare_windows(reference, current)

    assert [r.signal for r in results] == ["brightness"]
    assert results[0].current_parts == 40


def test_image_stats_are_the_grey_levels_mean_and_spread() -> None:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[:, 32:] = 200

    stats = image_stats(image)

    assert stats["brightness"] == pytest.approx(100.0)
    assert stats["contrast"] == pytest.approx(100.0)
    assert image_stats(np.full((16, 16), 7, dtype=np.uint8)) == {"brightness": 7.0, "contrast": 0.0, "sharpness": 0.0}


def test_sharpness_falls_when_the_lens_goes_out_of_focus_and_rises_with_sensor_noise() -> None:
    import cv2

    from workers.synthetic import synthetic_part

    part = np.asarray(synthetic_part(1, size=256, defect=None).image)
    blurred = cv2.GaussianBlur(part, (0, 0), 2.0)
    noisy = np.clip(part + np.random.default_rng(0).normal(0, 8, part.shape), 0, 255).astype(np.uint8)

    sharp = image_stats(part)["sharpness"]

    assert image_stats(blurred)["sharpness"] < 0.5 * sharp
    assert image_stats(noisy)["sharpness"] > 1.5 * sharp
    assert image_stats(blurred)["brightness"] == pytest.approx(image_stats(part)["brightness"], abs=1.0)


def test_the_worst_level_wins() -> None:
    assert worst([STABLE, DRIFT, WATCH]) == DRIFT
    assert worst([]) == STABLE
