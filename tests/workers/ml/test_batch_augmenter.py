"""Training batches are augmented ahead of the step on worker threads without changing them."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from workers.ml.trainers.common import BatchAugmenter


def _images() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(24, 32, 32, 3), dtype=np.uint8)


def _run(augmenter: BatchAugmenter, epoch: int) -> list[np.ndarray]:
    images = _images()
    index_batches = [np.arange(start, start + 4) for start in range(0, 24, 4)]

    def make(augment: Any, idx: np.ndarray) -> np.ndarray:
        return np.stack([augment(image=images[i])["image"] for i in idx])

    return list(augmenter.batches(epoch, index_batches, make))


@pytest.mark.parametrize("threads", [1, 3])
def test_batches_prepared_on_threads_equal_those_prepared_inline(threads: int) -> None:
    inline = _run(BatchAugmenter(seed=5, strength=1.0, threads=0), epoch=2)
    ahead = _run(BatchAugmenter(seed=5, strength=1.0, threads=threads), epoch=2)

    assert len(ahead) == len(inline) == 6
    for a, b in zip(ahead, inline, strict=True):
        np.testing.assert_array_equal(a, b)


def test_each_epoch_draws_new_augmentations() -> None:
    augmenter = BatchAugmenter(seed=5, strength=1.0, threads=0)
    first, second = _run(augmenter, epoch=0), _run(augmenter, epoch=1)

    assert any(not np.array_equal(a, _images()[i * 4 : i * 4 + 4]) for i, a in enumerate(first))
    assert any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_a_run_stopped_mid_epoch_leaves_no_augmenting_threads() -> None:
    images = _images()
    batches = BatchAugmenter(seed=1, strength=1.0, threads=2).batches(
        0, [np.arange(i, i + 2) for i in range(0, 24, 2)], lambda augment, idx: augment(image=images[idx[0]])["image"]
    )
    next(batches)
    batches.close()  # what a cancelled training run does to the generator

    assert not [t for t in threading.enumerate() if t.name.startswith("augment")]


def test_loader_threads_are_only_used_beside_a_gpu_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from workers.ml.trainers.common import loader_threads

    monkeypatch.delenv("LOUPE_TRAIN_LOADER_THREADS", raising=False)
    assert loader_threads(torch.device("cpu")) == 0
    assert 1 <= loader_threads(torch.device("cuda")) <= 8

    monkeypatch.setenv("LOUPE_TRAIN_LOADER_THREADS", "3")
    assert loader_threads(torch.device("cpu")) == 3
