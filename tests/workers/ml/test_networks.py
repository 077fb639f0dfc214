"""The patch classifier's and the fused anomaly scorer's contracts, on random weights (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from workers.ml.export import export_onnx
from workers.ml.networks import PatchClassifierNet, PatchCoreNet


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


def _fused_scorer() -> PatchCoreNet:
    torch.manual_seed(0)
    network = PatchCoreNet(
        taps=[4, 10], neighbourhood=3, bank_size=32, blur_sigma=1.0, pretrained=False, standardize=True,
        aggregation="max", defect_bank_size=8, flow_blocks=2, flow_hidden=16, grid=[8, 8], fused=True,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(3)
    network.set_memory_bank(torch.randn(32, network.features.channels, generator=generator))
    network.set_defect_bank(torch.randn(8, network.features.channels, generator=generator))
    return network.eval()


def test_a_fused_scorer_sums_the_flow_and_the_banks_each_weighted_by_its_goods_spread(tmp_path: Path) -> None:
    network = _fused_scorer()
    network.set_fusion_weights(torch.tensor([0.5, 2.0, 0.25, 4.0]))
    images = _parts(4)
    with torch.inference_mode():
        flow_map, bank_map = network.component_maps(images)
        scores, patch_map = network(images)
    # the flow's map pools by its mean (goods-only evidence spread over the part), the banks' by
    # the maximum (one patch near a known defect is enough)
    expected = 0.5 * flow_map.flatten(1).mean(1) + 2.0 * bank_map.flatten(1).max(1).values
    torch.testing.assert_close(scores, expected)
    torch.testing.assert_close(patch_map, 0.25 * flow_map + 4.0 * bank_map)
    # and the ONNX export computes the same
    path = tmp_path / "fused.onnx"
    export_onnx(network, path, input_size=(64, 64), output_names=["score", "patch_scores"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_scores, onnx_map = session.run(None, {"images": images.numpy()})
    np.testing.assert_allclose(onnx_scores, scores.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(onnx_map, patch_map.numpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "weights", [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0], [1.0, -1.0, 1.0, 1.0], [1.0, float("nan"), 1.0, 1.0]]
)
def test_fusion_weights_must_be_four_positive_finite_numbers(weights: list[float]) -> None:
    network = _fused_scorer()
    with pytest.raises(ValueError, match="fusion weights"):
        network.set_fusion_weights(torch.tensor(weights))
    torch.testing.assert_close(network.fusion_weights, torch.ones(4))  # left as it was


def test_a_fused_scorer_needs_both_a_flow_and_a_defect_bank() -> None:
    with pytest.raises(ValueError, match="needs a flow, a good bank and a defect bank"):
        PatchCoreNet(
            taps=[4],
            neighbourhood=3,
            bank_size=8,
            blur_sigma=1.0,
            pretrained=False,
            flow_blocks=2,
            grid=[8, 8],
            fused=True,
        )
