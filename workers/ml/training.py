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
from workers.ml.hyperparameters import resolve_hyperparameters
from workers.ml.networks import ClassifierNet, PatchClassifierNet, PatchCoreNet, SegmenterNet
from workers.ml.types import MODEL_KINDS, Progress, Sample, TrainResult

WEIGHTS_NAME = "weights.pt"
ONNX_NAME = "model.onnx"
ONNX_INT8_NAME = "model.int8.onnx"
MEMORY_BANK_NAME = "memory_bank.npy"


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
            flow_blocks=int(architecture.get("flow_blocks", 0)),
            flow_hidden=int(architecture.get("flow_hidden", 256)),
            grid=[int(v) for v in architecture.get("grid", [0, 0])],
            fused=bool(architecture.get("fused", False)),
            flow_aggregation=str(architecture.get("flow_aggregation", "mean")),
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
    params = resolve_hyperparameters(kind, hyperparameters)
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
            "input_size": list(trained.input_size(params)),
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
