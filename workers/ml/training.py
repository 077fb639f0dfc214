"""Training entry point: ``train()`` turns samples into a verified artifact directory.

The three kinds share data loading, splitting, progress/cancellation and artifact
writing; their learning code lives in ``workers.ml.trainers``. Everything runs on the
CPU threads torch is given (``torch.set_num_threads`` is the caller's business).

Artifacts are written to a hidden sibling of ``out_dir`` and renamed into place only
when complete, so a cancelled, failed or killed run never leaves a partial model.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from workers.ml.artifacts import staging_directory, write_manifest
from workers.ml.errors import TrainingCancelled, TrainingDataError
from workers.ml.networks import ClassifierNet, PatchClassifierNet, PatchCoreNet, SegmenterNet
from workers.ml.types import MODEL_KINDS, Progress, Sample, TrainResult

WEIGHTS_NAME = "weights.pt"
ONNX_NAME = "model.onnx"
ONNX_INT8_NAME = "model.int8.onnx"
MEMORY_BANK_NAME = "memory_bank.npy"

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
        "input_size": [320, 320],
        "taps": [12],
        "neighbourhood": 3,
        "standardize": True,
        "aggregation": "mean",
        "bank_size": 10000,
        "bank_selection": "random",
        "coreset_projection": 32,
        "coreset_candidates": 200_000,
        "blur_sigma": 1.0,
        # Labelled defects with masks or polygons, when the training data has them, add a
        # bank of defect patch features (at most this many rows; 0 turns it off). Such a
        # model scores by the maximum patch and keeps a larger good bank: on MTD 40,000 good
        # rows found 0.93 of defects at 1 % false reject, 10,000 rows 0.83 (~1.7x the cost).
        "defect_bank_size": 5000,
        "defect_aggregation": "max",
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


def build_network(manifest: Mapping[str, Any], *, pretrained: bool) -> nn.Module:
    """The untrained network described by a manifest's ``kind`` and ``architecture``."""
    kind = manifest["kind"]
    architecture = manifest["architecture"]
    if kind == "classifier" and architecture.get("head") == "patch-mlp":
        return PatchClassifierNet(
            len(manifest["class_names"]),
            taps=architecture["taps"],
            neighbourhood=int(architecture["neighbourhood"]),
            hidden=int(architecture["hidden"]),
            pretrained=pretrained,
            standardize=bool(architecture["standardize"]),
            context=bool(architecture.get("context", False)),
        )
    if kind == "classifier":
        return ClassifierNet(
            len(manifest["class_names"]), pretrained=pretrained, standardize=bool(architecture.get("standardize"))
        )
    if kind == "segmenter":
        return SegmenterNet(
            pretrained=pretrained,
            standardize=bool(architecture.get("standardize")),
            final_stride=int(architecture.get("final_stride", 1)),
        )
    if kind == "anomaly":
        return PatchCoreNet(
            taps=architecture["taps"],
            neighbourhood=int(architecture["neighbourhood"]),
            bank_size=int(architecture["bank_size"]),
            blur_sigma=float(architecture["blur_sigma"]),
            pretrained=pretrained,
            standardize=bool(architecture["standardize"]),
            aggregation=str(architecture["aggregation"]),
            defect_bank_size=int(architecture.get("defect_bank_size", 0)),
            projection_dims=int(architecture.get("projection_dims", 0)),
        )
    raise ValueError(f"unknown kind {kind!r}")


class RunControl:
    """Progress reporting and cooperative cancellation for one training run."""

    def __init__(
        self,
        progress: Callable[[Progress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self._progress = progress
        self._should_stop = should_stop
        self.started = time.monotonic()

    def check(self) -> None:
        """Raise ``TrainingCancelled`` if the caller asked to stop. Called every batch."""
        if self._should_stop is not None and self._should_stop():
            raise TrainingCancelled("training cancelled by caller")

    def report(self, progress: Progress) -> None:
        if self._progress is not None:
            self._progress(progress)

    def minutes(self) -> float:
        return (time.monotonic() - self.started) / 60.0


def is_good(sample: Sample, good_class: str) -> bool:
    return sample.label is None or sample.label == good_class


def seed_everything(seed: int) -> None:
    """Seed every RNG training touches, so the same inputs train the same model."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def stratified_split(labels: Sequence[str], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, val), each class split separately; a class of one sample stays in train."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    for label in sorted(set(labels)):
        members = [i for i, name in enumerate(labels) if name == label]
        rng.shuffle(members)
        n_val = round(len(members) * val_fraction) if len(members) >= 2 else 0
        n_val = min(max(n_val, 1 if len(members) >= 2 and val_fraction > 0 else 0), len(members) - 1)
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return sorted(train), sorted(val)


def train(
    *,
    kind: Literal["classifier", "anomaly", "segmenter"],
    samples: Sequence[Sample],
    good_class: str,
    out_dir: Path,
    hyperparameters: Mapping[str, Any] | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    seed: int = 0,
) -> TrainResult:
    """Train a model of ``kind`` on ``samples`` and write its artifact to ``out_dir``.

    ``out_dir`` must not exist or be empty. Raises ``TrainingCancelled`` as soon as
    ``should_stop()`` is True (checked every batch), ``TrainingDataError`` when the
    samples cannot train this kind. Deterministic for fixed ``seed`` and thread count.
    Cost: minutes on 2 CPU cores for ~1000 images (see benchmarks/README.md).
    """
    from workers.ml import trainers

    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    if not samples:
        raise TrainingDataError("no samples")
    params: dict[str, Any] = {**DEFAULT_HYPERPARAMETERS[kind], **dict(hyperparameters or {})}
    if kind == "classifier" and params["head"] == "global":
        params = {**DEFAULT_HYPERPARAMETERS[kind], **GLOBAL_HEAD_DEFAULTS, **dict(hyperparameters or {})}
    unknown = set(params) - set(DEFAULT_HYPERPARAMETERS[kind])
    if unknown:
        raise ValueError(f"unknown hyperparameters for {kind}: {sorted(unknown)}")
    if params.get("int8_calibration", "minmax") not in INT8_CALIBRATION_METHODS:
        raise ValueError(f"int8_calibration must be one of {sorted(INT8_CALIBRATION_METHODS)}")
    height, width = (int(v) for v in params["input_size"])
    if height % 32 or width % 32:
        raise ValueError("input_size must be multiples of 32")
    params["input_size"] = [height, width]
    seed_everything(seed)
    control = RunControl(progress, should_stop)
    control.check()
    trained = {
        "classifier": trainers.train_classifier,
        "segmenter": trainers.train_segmenter,
        "anomaly": trainers.train_anomaly,
    }[kind](samples=samples, good_class=good_class, params=params, control=control, seed=seed)
    control.check()
    with staging_directory(Path(out_dir)) as staging:
        trained.write(staging, params=params, control=control)
        control.check()
        # After write(): exporting adds the INT8-vs-fp32 accuracy to the metrics.
        metrics: dict[str, Any] = dict(trained.metrics)
        metrics["train_seconds"] = round(control.minutes() * 60.0, 1)
        manifest = {
            "kind": kind,
            "good_class": good_class,
            "class_names": trained.class_names,
            "input_size": params["input_size"],
            "architecture": trained.architecture,
            "thresholds": trained.thresholds,
            "normalisation": {"input": "RGB float32 0..255, ImageNet mean/std applied in-graph"},
            "weights": WEIGHTS_NAME,
            "memory_bank": MEMORY_BANK_NAME if (staging / MEMORY_BANK_NAME).exists() else None,
            "onnx": {
                "fp32": ONNX_NAME,
                "int8": ONNX_INT8_NAME if (staging / ONNX_INT8_NAME).exists() else None,
            },
            "hyperparameters": json.loads(json.dumps(params)),
            "metrics": json.loads(json.dumps(metrics)),
            "seed": seed,
            "versions": _versions(),
        }
        if trained.extra_manifest:
            manifest.update(trained.extra_manifest)
        artifacts = write_manifest(staging, manifest)
    return TrainResult(kind=kind, metrics=metrics, hyperparameters=params, artifacts=artifacts)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
