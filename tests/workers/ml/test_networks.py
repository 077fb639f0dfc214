"""The patch classifier network's contract, on random weights (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from workers.ml.export import export_onnx
from workers.ml.networks import PatchClassifierNet


def _network(*, context: bool) -> PatchClassifierNet:
    torch.manual_seed(0)
    network = PatchClassifierNet(3, taps=[4, 10], neighbourhood=3, hidden=16, pretrained=False, context=context)
    return network.eval()


def _parts(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 64, 64, generator=generator) * 255


def _corner_logits_before_and_after_changing_the_other_patches(
    network: PatchClassifierNet,
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(2, network.features.channels, 4, 4, generator=generator)
    changed = features.clone()
    changed[:, :, 1:, :] += 3.0  # every patch but the top row moves; the corner patch does not
    with torch.inference_mode():
        return network.patch_logits(features)[:, :, 0, 0], network.patch_logits(changed)[:, :, 0, 0]


def test_with_context_a_patch_is_judged_against_the_rest_of_its_own_part() -> None:
    # Without context a patch's logits are a function of that patch's features alone; with
    # context also of its part's mean patch (what a band unlike the rest of the tile needs).
    before, after = _corner_logits_before_and_after_changing_the_other_patches(_network(context=False))
    torch.testing.assert_close(before, after)

    aware = _network(context=True)
    assert aware.head[0].in_channels == 2 * aware.features.channels
    before, after = _corner_logits_before_and_after_changing_the_other_patches(aware)
    assert (before - after).abs().max() > 1e-2


def test_context_head_exports_to_onnx_and_agrees_with_pytorch(tmp_path: Path) -> None:
    network = _network(context=True)
    images = _parts(2)
    path = tmp_path / "model.onnx"
    export_onnx(network, path, input_size=(64, 64), output_names=["probabilities", "defect_map"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities, defect_map = session.run(None, {"images": images.numpy()})
    with torch.inference_mode():
        expected_probabilities, expected_map = network(images)
    np.testing.assert_allclose(probabilities, expected_probabilities.numpy(), atol=1e-4)
    np.testing.assert_allclose(defect_map, expected_map.numpy(), atol=1e-4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
