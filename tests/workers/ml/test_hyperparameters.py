"""Each kind's hyperparameters: defaults, what a caller may change, and the reasons a bad
value is refused. The web checks a training request with these rules before it queues a
job, so this module must not pull in torch."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from workers.ml.hyperparameters import DEFAULT_HYPERPARAMETERS, GLOBAL_HEAD_DEFAULTS, resolve_hyperparameters


@pytest.mark.parametrize("kind", sorted(DEFAULT_HYPERPARAMETERS))
def test_no_overrides_give_the_defaults(kind: str) -> None:
    assert resolve_hyperparameters(kind, None) == DEFAULT_HYPERPARAMETERS[kind]


def test_overrides_win_and_a_whole_number_stands_for_a_float() -> None:
    params = resolve_hyperparameters("segmenter", {"learning_rate": 1, "epochs": 3.0, "input_size": [224, 224]})

    assert params["learning_rate"] == 1 and params["epochs"] == 3.0 and params["input_size"] == [224, 224]
    assert params["batch_size"] == DEFAULT_HYPERPARAMETERS["segmenter"]["batch_size"]


def test_the_anomaly_detector_sees_parts_at_its_own_size_with_and_without_a_defect_bank() -> None:
    defaults = resolve_hyperparameters("anomaly", None)
    assert defaults["input_size"] == [256, 256] and defaults["input_size_with_defect_bank"] == [320, 320]

    # A caller who names one size means it for every model the request may make ...
    asked = resolve_hyperparameters("anomaly", {"input_size": [192, 192]})
    assert asked["input_size"] == asked["input_size_with_defect_bank"] == [192, 192]
    # ... and one who names both gets both.
    both = resolve_hyperparameters("anomaly", {"input_size": [192, 192], "input_size_with_defect_bank": [384, 384]})
    assert both["input_size"] == [192, 192] and both["input_size_with_defect_bank"] == [384, 384]


def test_the_global_head_takes_its_own_defaults_under_the_callers() -> None:
    params = resolve_hyperparameters("classifier", {"head": "global", "patience": 4})

    assert params["epochs"] == GLOBAL_HEAD_DEFAULTS["epochs"] != DEFAULT_HYPERPARAMETERS["classifier"]["epochs"]
    assert params["patience"] == 4


@pytest.mark.parametrize(
    ("kind", "overrides", "reason"),
    [
        ("classifier", ["epochs", 3], "must be an object"),
        ("detector", {}, "unknown kind"),
        ("anomaly", {"epochs": 3}, r"unknown hyperparameters for anomaly: \['epochs'\]"),
        ("classifier", {"epochs": True}, "epochs must be a number"),
        ("classifier", {"epochs": 2.5}, "epochs must be a whole number"),
        ("classifier", {"batch_size": 0}, "batch_size must be at least 1"),
        ("segmenter", {"learning_rate": float("nan")}, "finite"),
        ("segmenter", {"weight_decay": -1e-4}, "not negative"),
        ("anomaly", {"val_fraction": 0}, "between 0 and 1"),
        ("classifier", {"pretrained": 1}, "pretrained must be true or false"),
        ("classifier", {"head": "sideways"}, "head must be one of"),
        ("classifier", {"int8_calibration": "max"}, "int8_calibration must be one of"),
        ("anomaly", {"bank_selection": 3}, "bank_selection must be a string"),
        ("segmenter", {"input_size": [320]}, r"input_size must be \[height, width\]"),
        ("segmenter", {"input_size": [100, 100]}, "multiples of 32"),
        ("segmenter", {"input_size": [32_000, 32_000]}, "multiples of 32 between 32 and 2048"),
        ("anomaly", {"input_size_with_defect_bank": [320]}, r"input_size_with_defect_bank must be \[height, width\]"),
        ("anomaly", {"input_size_with_defect_bank": [300, 300]}, "input_size_with_defect_bank must be multiples of 32"),
        ("anomaly", {"taps": []}, "list of 1 to 16 integers"),
        ("anomaly", {"taps": [12.5]}, "list of integers"),
        ("anomaly", {"taps": [16]}, "taps must name Lite0 blocks"),
        ("anomaly", {"scorer": "mahalanobis"}, "scorer must be one of"),
        ("anomaly", {"flow_blocks": 0}, "flow_blocks must be at least 1"),
        ("anomaly", {"flow_hidden": 1_000_000}, "flow_hidden must be at most 2048"),
        ("anomaly", {"flow_max_steps": 10**9}, "flow_max_steps must be at most 100000"),
    ],
)
def test_a_bad_value_is_refused_with_its_reason(kind: str, overrides: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        resolve_hyperparameters(kind, overrides)


def test_the_rules_load_without_torch() -> None:
    code = "import sys, workers.ml.hyperparameters; print('torch' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert loaded.stdout.strip() == "False"
