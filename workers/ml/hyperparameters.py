"""Hyperparameters of each model kind: the defaults, and the check a request is held to.

Free of torch and Django, so the web process refuses a bad training request with a 400
before a job is queued, and the worker applies exactly the same rules before it trains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Defaults per kind, chosen on MTD (see benchmarks/README.md) to train in well under
# 10 minutes on 2 CPU cores. Callers override any key through ``hyperparameters``.
DEFAULT_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "classifier": {
        # "patch": an MLP per patch on frozen patch features, taught by masks where there are
        # some (workers/ml/trainers/patch_classifier.py); "global": Lite0 fine-tuned end to end
        # on image labels. On MTD's split the patch head finds 0.90 of defects at 1 % false
        # reject, the global head 0.62-0.77 (benchmarks/README.md). The global head's own
        # defaults are GLOBAL_HEAD_DEFAULTS, applied under whatever the caller sets.
        "head": "patch",
        # 320 px: small blowholes and frays need the pixels (global head, MTD: 224 px with
        # blocks 0-2 frozen found 0.53-0.58 at 1 % false reject, 320 px 0.77).
        "input_size": [320, 320],
        # Patch head: epochs over (view, image) items, batch_size of such items per step.
        "epochs": 60,
        "batch_size": 32,
        "learning_rate": 3e-3,
        "patch_taps": [12],
        "patch_neighbourhood": 3,
        "patch_hidden": 128,
        # Each patch also sees its tile's mean patch (PatchClassifierNet ``context``). Off:
        # on MTD it lost recall at 1 % false reject (0.82 against 0.90-0.92), and finer or
        # larger grids did too (block 10: 0.73; 448 px: 0.83-0.87): patch_head_scales.py.
        "patch_context": False,
        "views": 4,
        # Views after the first: "flips" (the tile's flips and 180-degree turn, with lighting,
        # blur and noise drawn by albumentations) or "albumentations" (the whole pipeline).
        "view_augment": "flips",
        "unmarked_weight": 0.0,
        # Global head only: fine-tuning schedule, frozen blocks, class sampling, smoothing.
        "head_lr_multiplier": 1.0,
        "freeze_through_block": 4,
        "sampling": "sqrt",
        "label_smoothing": 0.05,
        "weight_decay": 1e-4,
        "standardize": True,
        "val_fraction": 0.2,
        "patience": 20,
        "target_false_reject": 0.01,
        "min_defect_probability": 0.02,
        "max_minutes": 9.0,
        "augment": 1.0,
        # An INT8 copy is made for the manager to deploy (fp32 stays what a deploy serves
        # unless INT8 is asked for). With min-max ranges from 16 images the patch head lost
        # 3-13 points of defect recall at 1 % false reject on MTD; percentile ranges from 64
        # images lose none (0.90 -> 0.90 mean of three draws, 0.93 in mtd.py) for 5.7 -> 3.2
        # ms per image at batch 16 (benchmarks/int8_study.py, benchmarks/README.md).
        "int8": True,
        # How the INT8 copy's activation ranges are set (``quantize_int8``): "percentile"
        # (99.999 %, robust to rare outliers), "minmax" or "entropy", and from how many
        # training images. ~30 s at 320 px for 64 images.
        "int8_calibration": "percentile",
        "int8_calibration_images": 64,
        "pretrained": True,
    },
    "segmenter": {
        "input_size": [256, 256],
        "epochs": 40,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "head_lr_multiplier": 5.0,
        "weight_decay": 1e-4,
        # Blocks 0-4 frozen: ~1.5x faster steps, so more epochs in the budget (MTD test IoU 0.509
        # against 0.500 with only the stem and block 0 frozen, both without augmentation).
        "freeze_through_block": 4,
        # Measured on MTD: standardised input with lr 3e-3 collapsed (val IoU 0.08, early
        # stop); raw input with 1e-3 reached 0.26. The two were not separated for lack of time.
        "standardize": False,
        "final_stride": 1,
        "train_crop": 0,
        "good_fraction": 0.3,
        "val_fraction": 0.2,
        "patience": 10,
        "min_defect_pixels": 16,
        "max_minutes": 9.0,
        # Off: within a CPU budget the U-Net under-fits, and augmentation made it worse (MTD
        # test IoU 0.44 with, 0.51 without; benchmarks/README.md, segmenter_fit.py). Worth
        # turning back on where training has a GPU's budget.
        "augment": 0.0,
        "int8": False,
        "bf16": False,
        "pretrained": True,
    },
    "anomaly": {
        # The goods-only detector at 256 px: on MTD (DifferNet split, three seeds) image AUROC
        # 0.983-0.987 and recall at 1 % false reject 0.88-0.94, level with 320 px, at 11-13 ms
        # a part against 12-21 and half the training time (benchmarks/README.md). A model with
        # a defect bank keeps 320 px (input_size_with_defect_bank): at 256 it lost 4 of 60
        # defects on one of three splits. A request that sets only input_size sets both.
        "input_size": [256, 256],
        "input_size_with_defect_bank": [320, 320],
        "taps": [12],
        "neighbourhood": 3,
        "standardize": True,
        "aggregation": "mean",
        "bank_size": 10000,
        "bank_selection": "random",
        "coreset_projection": 32,
        "coreset_candidates": 200_000,
        "blur_sigma": 1.0,
        # How a goods-only model scores a patch: "flow", the negative log-likelihood under a
        # normalising flow fitted to the good patches (conditioned on the patch's position),
        # or "knn", the distance to the nearest of bank_size good patches. On MTD (DifferNet
        # split, three bank/hold-out seeds) the flow found 0.93 of defects at 1 % false
        # reject against 0.85, image AUROC 0.986 against 0.984 (benchmarks/README.md). A
        # model with a defect bank searches its banks by nearest neighbour, and with "flow"
        # also fits the flow (flow_with_defect_bank).
        "scorer": "flow",
        "flow_blocks": 8,
        "flow_hidden": 256,
        # Passes over the good patches, at least flow_min_steps and at most flow_max_steps
        # batches of 512 (MTD's 685 goods: 25 passes, ~3,300 steps, ~5 minutes on 2 cores).
        "flow_epochs": 25,
        "flow_min_steps": 200,
        "flow_max_steps": 4000,
        # Labelled defects with masks or polygons, when the training data has them, add a
        # bank of defect patch features (at most this many rows; 0 turns it off). Such a
        # model scores by the maximum patch and keeps a larger good bank: on MTD 40,000 good
        # rows found 0.93 of defects at 1 % false reject, 10,000 rows 0.83 (~1.7x the cost).
        "defect_bank_size": 5000,
        "defect_aggregation": "max",
        # With a defect bank and the flow scorer, also fit the flow and sum the two scorers'
        # evidence (each divided by its spread on held-out goods). Off: on MTD's classifier
        # splits (3 seeds) it found the same defects at 1 % false reject (0.92 / 0.93 / 0.93),
        # image AUROC 0.993 / 0.970 / 0.980 against 0.991 / 0.983 / 0.983, for ~5 more
        # training minutes and ~25 % more ms per part (benchmarks/README.md).
        "flow_with_defect_bank": False,
        "bank_size_with_defect_bank": 40_000,
        # Principal components the patch features are projected onto before the search (0:
        # none). A model with a defect bank searches 40,000 rows; projected from 192 to 96
        # dimensions it costs about half as much (benchmarks/README.md).
        "projection_dims": 0,
        "projection_dims_with_defect_bank": 96,
        "val_fraction": 0.1,
        "target_false_reject": 0.01,
        "pretrained": True,
    },
}


INT8_CALIBRATION_METHODS = frozenset({"minmax", "percentile", "entropy"})

# The global classifier head's defaults where they differ from the patch head's.
GLOBAL_HEAD_DEFAULTS: dict[str, Any] = {
    "epochs": 30,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "patience": 10,
}


# Values a string hyperparameter may take (the trainers branch on them).
CHOICES: dict[str, frozenset[str]] = {
    "head": frozenset({"patch", "global"}),
    "sampling": frozenset({"sqrt", "balanced"}),
    "view_augment": frozenset({"flips", "albumentations"}),
    "aggregation": frozenset({"mean", "max"}),
    "defect_aggregation": frozenset({"mean", "max"}),
    "bank_selection": frozenset({"random", "coreset"}),
    "scorer": frozenset({"flow", "knn"}),
    "int8_calibration": INT8_CALIBRATION_METHODS,
}
# Numbers that must be at least 1 (counts), and fractions that must lie in (0, 1).
AT_LEAST_ONE = frozenset(
    {
        "epochs",
        "batch_size",
        "views",
        "int8_calibration_images",
        "patience",
        "flow_blocks",
        "flow_hidden",
        "flow_epochs",
        "flow_min_steps",
        "flow_max_steps",
    }
)
FRACTIONS = frozenset({"val_fraction", "target_false_reject"})
# Sizes a request could otherwise blow a worker's memory or time with.
AT_MOST = {
    "flow_blocks": 32,
    "flow_hidden": 2048,
    "flow_epochs": 1000,
    "flow_min_steps": 100_000,
    "flow_max_steps": 100_000,
}
LARGEST_INPUT = 2048
SIZES = ("input_size", "input_size_with_defect_bank")  # [height, width] in pixels
TAP_RANGE = range(-1, 16)  # Lite0: the stem (-1) and blocks 0-15


def resolve_hyperparameters(kind: str, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The hyperparameters a run of ``kind`` uses: the defaults under ``overrides``.

    Raises ``ValueError`` with a reason for an unknown key, a value of the wrong JSON type
    (each key keeps its default's type; an integer stands for a float), a negative, zero or
    non-finite number where a count, size or fraction is expected, or a string outside its
    choices.
    """
    if kind not in DEFAULT_HYPERPARAMETERS:
        raise ValueError(f"unknown kind {kind!r}")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ValueError("hyperparameters must be an object of names and values")
    given = dict(overrides or {})
    defaults = dict(DEFAULT_HYPERPARAMETERS[kind])
    if kind == "classifier" and given.get("head", defaults["head"]) == "global":
        defaults.update(GLOBAL_HEAD_DEFAULTS)
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"unknown hyperparameters for {kind}: {sorted(unknown)}")
    for key, value in given.items():
        _check(key, value, defaults[key])
    params = {**defaults, **given}
    if "input_size_with_defect_bank" in defaults and "input_size" in given:
        # The size asked for is the size used, whichever model the data makes.
        params["input_size_with_defect_bank"] = given.get("input_size_with_defect_bank", params["input_size"])
    for key in SIZES:
        if key not in params:
            continue
        height, width = (int(v) for v in params[key])
        if height % 32 or width % 32 or not (32 <= height <= LARGEST_INPUT and 32 <= width <= LARGEST_INPUT):
            raise ValueError(f"{key} must be multiples of 32 between 32 and {LARGEST_INPUT}")
        params[key] = [height, width]
    return params


def _check(key: str, value: Any, default: Any) -> None:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false")
    elif isinstance(default, int | float):
        _check_number(key, value, integer=isinstance(default, int))
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
        if key in CHOICES and value not in CHOICES[key]:
            raise ValueError(f"{key} must be one of {sorted(CHOICES[key])}")
    elif isinstance(default, list):
        if not isinstance(value, list) or not value or len(value) > 16:
            raise ValueError(f"{key} must be a list of 1 to 16 integers")
        if key in SIZES and len(value) != 2:
            raise ValueError(f"{key} must be [height, width]")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int):
                raise ValueError(f"{key} must be a list of integers")
        if key.endswith("taps") and any(tap not in TAP_RANGE for tap in value):
            raise ValueError(f"{key} must name Lite0 blocks between -1 (the stem) and 15")


def _check_number(key: str, value: Any, *, integer: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number")
    if integer and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{key} must be a whole number")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{key} must be a finite number, not negative")
    if key in AT_LEAST_ONE and value < 1:
        raise ValueError(f"{key} must be at least 1")
    if key in FRACTIONS and not 0 < value < 1:
        raise ValueError(f"{key} must lie between 0 and 1")
    if key in AT_MOST and value > AT_MOST[key]:
        raise ValueError(f"{key} must be at most {AT_MOST[key]}")
