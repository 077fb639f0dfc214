"""ONNX export and INT8 quantisation of the trained networks.

Exports use the TorchScript-based exporter (``dynamo=False``): it needs no extra
package (the dynamo exporter wants onnxscript) and handles the Lite0 static padding.
The batch axis is dynamic; height and width are fixed to the manifest's input size.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch
from torch import nn

ONNX_OPSET = 17
INPUT_NAME = "images"
KEEP_FLOAT_OPS = frozenset({"Sub", "Div", "Softmax", "Sigmoid"})


def export_onnx(
    network: nn.Module,
    path: Path,
    *,
    input_size: tuple[int, int],
    output_names: Sequence[str],
) -> None:
    """Write ``network`` (in eval mode) to ``path`` as a single self-contained ONNX file.

    Input ``images``: float32 (N, 3, H, W), values 0..255. Cost: a few seconds.
    """
    network.eval()
    example = torch.zeros(1, 3, *input_size)
    dynamic_axes = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in output_names}}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo; it still works and
        # is the one that needs no extra dependency.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
        )


def quantize_int8(
    source: Path,
    target: Path,
    calibration_batches: Sequence[np.ndarray],
    *,
    float_modules: Sequence[str] = (),
    method: Literal["minmax", "percentile", "entropy"] = "minmax",
    float_depthwise: bool = False,
) -> None:
    """Static INT8 quantisation (QDQ, per-channel weights; activation ranges by ``method``).

    ``calibration_batches`` are float32 NCHW input batches (values 0..255) drawn from
    training images; 8-32 images are enough. ``float_modules``: node-name prefixes of the
    export (``/head/``) left in float, for a small head whose decisions hinge on small
    probabilities. ``float_depthwise`` leaves the depthwise convolutions (``group`` > 1) in
    float: one weight per channel per tap is where 8 bits lose most in MobileNet-style
    nets. ``benchmarks/int8_study.py`` compares the options. Cost: ~seconds per calibration
    image.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class _Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no stubs
        def __init__(self, batches: Sequence[np.ndarray]) -> None:
            # One image per run: the histogram calibrators (percentile, entropy) stack each
            # run's outputs and fail on batches of different sizes (a short last batch).
            self._batches: Iterator[np.ndarray] = (image[None] for batch in batches for image in batch)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Shape inference + graph optimisation first, as onnxruntime recommends for QDQ.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        # Input normalisation and the output squashing stay float: they cost nothing, and
        # 8-bit probabilities would move a reject threshold set at 1e-3 by whole steps.
        graph = onnx.load(str(prepared)).graph
        keep_float = [node.name for node in graph.node if node.op_type in KEEP_FLOAT_OPS]
        keep_float += downstream_of(graph, {"Softmax", "Sigmoid"})
        keep_float += [node.name for node in graph.node if node.name.startswith(tuple(float_modules))]
        if float_depthwise:
            keep_float += [node.name for node in graph.node if node.op_type == "Conv" and _group(node) > 1]
        methods = {
            "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy,
        }
        quantize_static(
            str(prepared),
            str(target),
            _Reader(calibration_batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            nodes_to_exclude=keep_float,
        )


def _group(node: onnx.NodeProto) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "group"), 1)


def downstream_of(graph: onnx.GraphProto, op_types: set[str]) -> list[str]:
    """Names of the nodes fed, directly or not, by a node of one of ``op_types``.

    Everything after the probabilities stays float: a patch head takes the min and max of
    patch probabilities, and 8-bit steps (1/255) there would sit right on a reject
    threshold of a few hundredths (measured on the toy set: 8 of 24 goods rejected).
    """
    tainted: set[str] = set()
    names: list[str] = []
    for node in graph.node:  # ONNX graphs are topologically sorted
        if node.op_type in op_types or any(name in tainted for name in node.input):
            if node.op_type not in op_types:
                names.append(node.name)
            tainted.update(node.output)
    return names
