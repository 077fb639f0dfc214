"""INT8 quantisation: which layers go to 8 bits, and the copy still answers like fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from workers.ml.export import export_onnx, quantize_int8


class _Tiny(nn.Module):
    """Pointwise, depthwise and pointwise convolution, pooled to two softmax outputs."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.expand = nn.Conv2d(3, 8, 1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.project = nn.Conv2d(8, 2, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - 128.0) / 64.0
        x = torch.relu(self.project(torch.relu(self.depthwise(torch.relu(self.expand(x))))))
        return torch.softmax(x.mean(dim=(2, 3)), dim=1)


def _quantized_convs(path: Path) -> dict[str, bool]:
    """Each Conv's name -> whether its weight arrives through a DequantizeLinear (8-bit)."""
    graph = onnx.load(str(path)).graph
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    return {node.name: node.input[1] in dequantized for node in graph.node if node.op_type == "Conv"}


def _run(path: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"images": batch})[0])


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("int8") / "model.onnx"
    export_onnx(_Tiny(), path, input_size=(16, 16), output_names=["probabilities"])
    return path


def _calibration() -> list[np.ndarray]:
    """Two batches of training images, the last one short, as a trainer hands them over."""
    rng = np.random.default_rng(0)
    return [rng.uniform(0, 255, (n, 3, 16, 16)).astype(np.float32) for n in (4, 3)]


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_every_calibration_method_gives_a_copy_that_answers_like_fp32(
    fp32_model: Path, tmp_path: Path, method: str
) -> None:
    target = tmp_path / "model.int8.onnx"
    quantize_int8(fp32_model, target, _calibration(), method=method)  # type: ignore[arg-type]
    assert all(_quantized_convs(target).values())
    batch = np.random.default_rng(1).uniform(0, 255, (8, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(target, batch), _run(fp32_model, batch), atol=0.05)


def test_depthwise_convolutions_can_stay_in_float(fp32_model: Path, tmp_path: Path) -> None:
    target = tmp_path / "model.int8.onnx"
    quantize_int8(fp32_model, target, _calibration(), float_depthwise=True)
    graph = onnx.load(str(target)).graph
    groups = {
        node.name: next((a.i for a in node.attribute if a.name == "group"), 1)
        for node in graph.node
        if node.op_type == "Conv"
    }
    quantized = _quantized_convs(target)
    assert {name for name, group in groups.items() if group > 1} == {n for n, q in quantized.items() if not q}
    assert sum(quantized.values()) == 2  # the two pointwise convolutions are still 8-bit
