"""Where training runs: the GPU when there is one, unless told otherwise."""

from __future__ import annotations

import pytest
import torch

from workers.ml.trainers.common import training_device


def test_auto_trains_on_the_gpu_only_when_pytorch_sees_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOUPE_TRAIN_DEVICE", raising=False)

    assert training_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cpu_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOUPE_TRAIN_DEVICE", "cpu")

    assert training_device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU")
def test_asking_for_cuda_on_a_host_without_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOUPE_TRAIN_DEVICE", "cuda")

    with pytest.raises(RuntimeError, match="LOUPE_TRAIN_DEVICE=cuda"):
        training_device()
