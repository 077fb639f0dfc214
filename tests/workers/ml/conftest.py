"""Fixtures for the ML engine tests: a generated toy surface-defect dataset and
artifacts trained on it once per session.

The toy parts are 64x64 brushed-metal-like textures; defects are a dark scratch
(a line) or a bright blob (a disc), with exact masks. Everything is generated from
fixed seeds, so every run trains on the same pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from workers.ml.training import train
from workers.ml.types import ModelKind, Sample, TrainResult

GOOD = "good"
SIZE = 64


def make_surface(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """Grayscale uint8 texture: brightness gradient, vertical streaks, sensor noise."""
    base = rng.uniform(90, 140)
    streaks = rng.normal(0, 6, size=(1, size)).repeat(size, axis=0)
    gradient = np.linspace(-10, 10, size)[:, None] * rng.uniform(-1, 1)
    noise = rng.normal(0, 4, size=(size, size))
    return np.clip(base + streaks + gradient + noise, 0, 255).astype(np.uint8)


def draw_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Draw a defect of ``kind`` onto ``image`` in place; return its uint8 {0,255} mask."""
    mask = np.zeros_like(image)
    size = image.shape[0]
    if kind == "scratch":
        x0, y0 = rng.integers(8, size - 8, size=2)
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(18, 30)
        x1 = int(np.clip(x0 + length * np.cos(angle), 2, size - 3))
        y1 = int(np.clip(y0 + length * np.sin(angle), 2, size - 3))
        cv2.line(mask, (int(x0), int(y0)), (x1, y1), 255, thickness=3)
        image[mask > 0] = np.clip(image[mask > 0].astype(int) - 60, 0, 255).astype(np.uint8)
    elif kind == "blob":
        cx, cy = rng.integers(12, size - 12, size=2)
        radius = int(rng.integers(5, 9))
        cv2.circle(mask, (int(cx), int(cy)), radius, 255, thickness=-1)
        image[mask > 0] = np.clip(image[mask > 0].astype(int) + 70, 0, 255).astype(np.uint8)
    else:
        raise ValueError(kind)
    return mask


@dataclass(frozen=True)
class ToySet:
    samples: list[Sample]
    images: list[np.ndarray]  # RGB uint8
    masks: list[np.ndarray]  # uint8 {0,255}
    labels: list[str]


def make_toy_set(directory: Path, *, seed: int, per_class: dict[str, int]) -> ToySet:
    """Write a toy dataset to ``directory`` and return samples plus in-memory copies."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    labels: list[str] = []
    for label, count in per_class.items():
        for index in range(count):
            image = make_surface(rng)
            mask = np.zeros_like(image) if label == GOOD else draw_defect(image, label, rng)
            image_path = directory / f"{label}_{index}.png"
            cv2.imwrite(str(image_path), image)
            mask_path = None
            if label != GOOD:
                mask_path = directory / f"{label}_{index}_mask.png"
                cv2.imwrite(str(mask_path), mask)
            samples.append(Sample(image_path=image_path, label=None if label == GOOD else label, mask_path=mask_path))
            images.append(np.repeat(image[:, :, None], 3, axis=2))
            masks.append(mask)
            labels.append(label)
    return ToySet(samples=samples, images=images, masks=masks, labels=labels)


@pytest.fixture(autouse=True, scope="session")
def _deterministic_threads() -> Iterator[None]:
    # One thread: float reductions add up in the same order on every machine, and the
    # suite does not fight other processes for cores (OpenMP spinning made a shared
    # 2-core box 8x slower with two threads).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def toy_train(tmp_path_factory: pytest.TempPathFactory) -> ToySet:
    return make_toy_set(tmp_path_factory.mktemp("toy_train"), seed=1, per_class={GOOD: 48, "scratch": 24, "blob": 24})


@pytest.fixture(scope="session")
def toy_test(tmp_path_factory: pytest.TempPathFactory) -> ToySet:
    return make_toy_set(tmp_path_factory.mktemp("toy_test"), seed=2, per_class={GOOD: 24, "scratch": 12, "blob": 12})


FAST = {
    # The patch head on stride-8 and stride-16 taps: an 8 x 8 grid of patches on a 64 px part.
    "classifier": {
        "input_size": [64, 64],
        "epochs": 6,
        "batch_size": 16,
        "patience": 6,
        "learning_rate": 2e-3,
        "patch_taps": [4, 10],
    },
    "segmenter": {
        "input_size": [64, 64],
        "epochs": 10,
        "batch_size": 8,
        "patience": 10,
        "learning_rate": 3e-3,
        "good_fraction": 0.25,
    },
    # Small local defects on a 64 px part: stride-8 taps and the max patch score; coreset
    # selection so the k-centre path is exercised too.
    "anomaly": {
        "input_size": [64, 64],
        "taps": [4, 10],
        "bank_size": 512,
        "aggregation": "max",
        "bank_selection": "coreset",
    },
}


@dataclass(frozen=True)
class Trained:
    out_dir: Path
    result: TrainResult


def _train(kind: ModelKind, toy: ToySet, root: Path) -> Trained:
    out_dir = root / kind
    samples = toy.samples if kind != "anomaly" else [s for s in toy.samples if s.label is None]
    result = train(
        kind=kind,
        samples=samples,
        good_class=GOOD,
        out_dir=out_dir,
        hyperparameters=FAST[kind],
        seed=0,
    )
    return Trained(out_dir=out_dir, result=result)


@pytest.fixture(scope="session")
def trained_classifier(toy_train: ToySet, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _train("classifier", toy_train, tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def trained_global_classifier(toy_train: ToySet, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The global head (Lite0 fine-tuned on image labels), with its INT8 copy."""
    out_dir = tmp_path_factory.mktemp("artifacts") / "global"
    hyperparameters = {key: value for key, value in FAST["classifier"].items() if key != "patch_taps"}
    result = train(
        kind="classifier",
        samples=toy_train.samples,
        good_class=GOOD,
        out_dir=out_dir,
        hyperparameters={**hyperparameters, "head": "global"},
        seed=0,
    )
    return Trained(out_dir=out_dir, result=result)


@pytest.fixture(scope="session")
def trained_segmenter(toy_train: ToySet, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _train("segmenter", toy_train, tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def trained_anomaly(toy_train: ToySet, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _train("anomaly", toy_train, tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def trained_knn_anomaly(toy_train: ToySet, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A goods-only detector scoring by nearest-neighbour distance: it ships a memory bank file."""
    out_dir = tmp_path_factory.mktemp("artifacts") / "knn"
    goods = [s for s in toy_train.samples if s.label is None]
    hyperparameters = {**FAST["anomaly"], "scorer": "knn"}
    result = train(kind="anomaly", samples=goods, good_class=GOOD, out_dir=out_dir, hyperparameters=hyperparameters)
    return Trained(out_dir=out_dir, result=result)
