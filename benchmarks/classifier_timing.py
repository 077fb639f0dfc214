"""Classifier speed rows of ``mtd.py``, run by it in a child process.

``mtd.py`` trains under ``OMP_WAIT_POLICY=PASSIVE`` (a busy 2-core machine otherwise slows
PyTorch training by up to 10x), but that policy also triples PyTorch's batch-1 latency and
would flatter ONNX Runtime's speed-up. Here every backend runs with the process defaults.

    python benchmarks/classifier_timing.py '{"dir": ..., "artifacts": {...}, "images": [...]}'

prints one JSON object: ms per image for eager / ORT fp32 / ORT INT8 at batch 1 and 16.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.ml.imaging import read_image, to_batch
from workers.ml.inference import OnnxInferencer, TorchInferencer, load_inferencer


def ms_per_image(run: Callable[[np.ndarray], Any], batch: np.ndarray, repeats: int) -> float:
    """Median over ``repeats`` runs of one batch, after two warm-up runs, in ms per image."""
    for _ in range(2):
        run(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000.0 / len(batch)


def classifier_timing(artifact_dir: Path, artifacts: dict[str, str], image_paths: Sequence[Path]) -> dict[str, float]:
    """ms per image of PyTorch eager, ONNX Runtime fp32 and INT8 at batch 1 and 16, and
    ONNX Runtime fp32 with spinning threads (``LOUPE_INFERENCE_SPIN``, a dedicated box)."""
    onnx_fp32 = load_inferencer(artifact_dir, artifacts)
    onnx_spin = load_inferencer(artifact_dir, artifacts, allow_spinning=True)
    onnx_int8 = load_inferencer(artifact_dir, artifacts, int8=True)
    eager = load_inferencer(artifact_dir, artifacts, backend="torch")
    assert isinstance(onnx_fp32, OnnxInferencer) and isinstance(onnx_int8, OnnxInferencer)
    assert isinstance(onnx_spin, OnnxInferencer)
    assert isinstance(eager, TorchInferencer)
    batch = to_batch([read_image(path) for path in image_paths], onnx_fp32.input_size)
    timing = {}
    for batch_size in (1, 16):
        sample_batch = batch[:batch_size]
        repeats = 30 if batch_size == 1 else 8
        timing[f"eager_b{batch_size}"] = ms_per_image(eager.forward_batch, sample_batch, repeats)
        timing[f"ort_fp32_b{batch_size}"] = ms_per_image(onnx_fp32.forward_batch, sample_batch, repeats)
        timing[f"ort_int8_b{batch_size}"] = ms_per_image(onnx_int8.forward_batch, sample_batch, repeats)
        timing[f"ort_fp32_spin_b{batch_size}"] = ms_per_image(onnx_spin.forward_batch, sample_batch, repeats)
    return timing


def main(argv: Sequence[str] | None = None) -> int:
    spec = json.loads((sys.argv[1:] if argv is None else list(argv))[0])
    timing = classifier_timing(Path(spec["dir"]), spec["artifacts"], [Path(p) for p in spec["images"]])
    print(json.dumps(timing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
