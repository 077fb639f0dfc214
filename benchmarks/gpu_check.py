"""GPU check, run by hand on a host with an NVIDIA GPU (CI never has one).

Trains each model kind on generated parts twice, on the GPU and on the CPU
(``LOUPE_TRAIN_DEVICE``), checks that the GPU-trained artifact serves through ONNX Runtime
and PyTorch with agreeing outputs, times GPU eager inference against CPU, and reports
which ONNX Runtime execution providers this host offers (``CUDAExecutionProvider`` needs
the ``onnxruntime-gpu`` package).

    python benchmarks/gpu_check.py [--parts 240] [--size 160] [--epochs 6]

Prints a table, then one JSON line of the headline figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.ml.inference import available_providers, load_inferencer
from workers.ml.training import train
from workers.ml.types import Prediction, Sample
from workers.synthetic import DEFECT_KINDS, synthetic_part


def dataset(root: Path, parts: int, size: int) -> list[Sample]:
    samples = []
    for index in range(parts):
        defect = None if index % 3 else str(DEFECT_KINDS[(index // 3) % len(DEFECT_KINDS)])
        part = synthetic_part(10_000 + index, size=size, defect=defect)
        image_path = root / f"p{index}.png"
        part.image.save(image_path)
        mask_path = None
        if defect is not None:
            mask_path = root / f"p{index}_mask.png"
            part.mask.save(mask_path)
        samples.append(Sample(image_path=image_path, label=defect, mask_path=mask_path))
    return samples


def parity_gap(kind: str, onnx: list[Prediction], eager: list[Prediction]) -> float:
    """Largest disagreement between the runtimes: probability, relative score, mask pixels."""
    gaps = []
    for a, b in zip(onnx, eager, strict=True):
        if kind == "classifier" and a.probabilities and b.probabilities:
            gaps += [abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities]
        elif kind == "anomaly" and a.anomaly_score is not None and b.anomaly_score is not None:
            gaps.append(abs(a.anomaly_score - b.anomaly_score) / max(1e-6, abs(b.anomaly_score)))
        elif a.mask is not None and b.mask is not None:
            gaps.append(float(np.mean(a.mask != b.mask)))
    return float(max(gaps))


def ort_timings(out: Path, artifacts: dict[str, str], *, size: int) -> dict[str, float]:
    """ms per image through ``Inferencer.predict`` (decode-free: arrays in, predictions out)
    at batch 1 and 16: ONNX Runtime with the CUDA provider, then the same artifact pinned to
    the CPU provider, then PyTorch eager on the CPU."""
    import workers.ml.inference as inference

    images = [np.asarray(synthetic_part(50_000 + i, size=size).image) for i in range(16)]
    timings: dict[str, float] = {}

    def clock(name: str, inferencer: Any) -> None:
        for batch in (1, 16):
            chunk = images[:batch]
            for _ in range(5):
                inferencer.predict(chunk)
            rounds = 40 if batch == 1 else 10
            started = time.perf_counter()
            for _ in range(rounds):
                inferencer.predict(chunk)
            timings[f"{name}_b{batch}"] = round((time.perf_counter() - started) / rounds / batch * 1000, 3)

    clock("ort_cuda", load_inferencer(out, artifacts, backend="onnx"))
    original = inference.available_providers
    inference.available_providers = lambda: ["CPUExecutionProvider"]
    try:
        clock("ort_cpu", load_inferencer(out, artifacts, backend="onnx"))
    finally:
        inference.available_providers = original
    clock("torch_cpu", load_inferencer(out, artifacts, backend="torch"))
    print("classifier serving, ms per image:", json.dumps(timings), flush=True)
    return timings


def stamp(reports: list[float], _progress: object) -> None:
    reports.append(time.perf_counter())


def warm_up(gpu: bool, samples: list[Sample], work: Path, size: int) -> None:
    """Imports, CUDA context and the first load of each network's kernels (measured at ~13 s
    per process on an H200), paid by a one-epoch run of each kind so no timed row pays them."""
    from workers.ml import trainers  # noqa: F401 - imported for its start-up cost

    if not gpu:
        return
    os.environ["LOUPE_TRAIN_DEVICE"] = "cuda"
    started = time.perf_counter()
    for kind in ("classifier", "segmenter"):
        train(
            kind=kind,
            samples=samples,
            good_class="good",
            out_dir=work / kind,
            hyperparameters={"epochs": 1, "input_size": [size, size]},
        )
    print(f"warm-up (CUDA start, kernel loading, one epoch of each network): {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, default=240)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--skip-cpu", action="store_true", help="GPU rows only (no CPU training to compare)")
    args = parser.parse_args()

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    print(f"host: {platform.node()} · torch {torch.__version__} · GPU: {gpu or 'none'}")
    import onnxruntime as ort

    print(
        f"onnxruntime {ort.__version__}: providers {ort.get_available_providers()}; Loupe uses {available_providers()}"
    )
    work = Path(tempfile.mkdtemp(prefix="loupe-gpu-"))
    samples = dataset(work, args.parts, args.size)
    goods = [s for s in samples if s.label is None]
    params = {
        "classifier": {"epochs": args.epochs, "input_size": [args.size, args.size], "patience": args.epochs},
        "segmenter": {"epochs": args.epochs, "input_size": [args.size, args.size], "patience": args.epochs},
        "anomaly": {"input_size": [args.size, args.size]},
    }
    rows: list[dict[str, Any]] = []
    headline: dict[str, object] = {"gpu": gpu}
    served: dict[str, Any] = {}
    # "cuda-inline": on the GPU with augmentation in the training thread (no loader threads),
    # to show what the loader threads buy.
    devices = ["cuda", "cuda-inline", "cpu"] if gpu else ["cpu"]
    if gpu and args.skip_cpu:
        devices.remove("cpu")
    warm_up(bool(gpu), samples[:48], work / "warm-up", args.size)
    for kind in ("classifier", "segmenter", "anomaly"):
        for device in devices:
            os.environ["LOUPE_TRAIN_DEVICE"] = device.removesuffix("-inline")
            if device.endswith("-inline"):
                os.environ["LOUPE_TRAIN_LOADER_THREADS"] = "0"
            else:
                os.environ.pop("LOUPE_TRAIN_LOADER_THREADS", None)
            out = work / f"{kind}-{device}"
            reports: list[float] = []
            started = time.perf_counter()
            result = train(
                kind=kind,
                samples=goods if kind == "anomaly" else samples,
                good_class="good",
                out_dir=out,
                hyperparameters=params[kind],
                progress=functools.partial(stamp, reports),
                seed=0,
            )
            ended = time.perf_counter()
            seconds = ended - started
            metric_name = {"classifier": "accuracy", "segmenter": "val_iou", "anomaly": "val_image_auroc"}[kind]
            metric = result.metrics.get(metric_name)
            row: dict[str, Any] = {"kind": kind, "device": device, "train_s": round(seconds, 1), metric_name: metric}
            if len(reports) >= 2:
                # Epoch time from the progress reports; "finish" is calibration, ONNX export,
                # INT8 quantization and its check, all on the CPU.
                row["epoch_s"] = round((reports[-1] - reports[0]) / (len(reports) - 1), 2)
                row["finish_s"] = round(ended - reports[-1], 1)
            if device == devices[0]:
                # The GPU-trained artifact serves on ONNX Runtime and PyTorch alike.
                onnx = load_inferencer(out, result.artifacts, backend="onnx")
                eager = load_inferencer(out, result.artifacts, backend="torch")
                # What the session really runs on: ONNX Runtime falls back to the CPU quietly.
                row["onnx_session_providers"] = getattr(onnx, "providers", None)
                served[kind] = (out, result.artifacts)
                images = [np.asarray(synthetic_part(99_000 + i, size=args.size).image) for i in range(8)]
                row["ort_vs_torch_gap"] = round(parity_gap(kind, onnx.predict(images), eager.predict(images)), 6)
            rows.append(row)
            print(json.dumps(row), flush=True)
        if gpu:
            kind_rows = rows[-len(devices) :]
            if not args.skip_cpu:
                headline[f"{kind}_train_speedup"] = round(
                    kind_rows[-1]["train_s"] / max(kind_rows[0]["train_s"], 1e-3), 2
                )
            if "epoch_s" in kind_rows[0]:
                headline[f"{kind}_epoch_s"] = {r["device"]: r["epoch_s"] for r in kind_rows}

    if gpu:
        if "CUDAExecutionProvider" in available_providers():
            headline["ort_ms_per_image"] = ort_timings(*served["classifier"], size=args.size)
        headline["onnx_session_providers"] = {
            k: r["onnx_session_providers"]
            for k, r in zip(("classifier", "segmenter", "anomaly"), rows[:: len(devices)], strict=True)
        }

        from workers.ml.networks import ClassifierNet

        network = ClassifierNet(4, pretrained=True, standardize=True).eval()
        batch = torch.rand(16, 3, 224, 224) * 255
        timings = {}
        for device in ("cuda", "cpu"):
            model, x = network.to(device), batch.to(device)
            with torch.inference_mode():
                for _ in range(3):
                    model(x)
                if device == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                for _ in range(20):
                    model(x)
                if device == "cuda":
                    torch.cuda.synchronize()
            timings[device] = (time.perf_counter() - started) / 20 / 16 * 1000
        headline["eager_ms_per_image_b16"] = {k: round(v, 3) for k, v in timings.items()}

    print()
    print(
        f"{'kind':<11} {'device':<12} {'train s':>8} {'epoch s':>8} {'finish s':>9}  metric             ORT vs torch gap"
    )
    for row in rows:
        name, figure = next(
            (k, v)
            for k, v in row.items()
            if k
            not in {"kind", "device", "train_s", "ort_vs_torch_gap", "epoch_s", "finish_s", "onnx_session_providers"}
        )
        value = f"{figure:.3f}" if isinstance(figure, float) else str(figure)
        print(
            f"{row['kind']:<11} {row['device']:<12} {row['train_s']:>8} {row.get('epoch_s', ''):>8} "
            f"{row.get('finish_s', ''):>9}  {name}={value:<10} {row.get('ort_vs_torch_gap', '')}"
        )
    headline["cuda_execution_provider"] = "CUDAExecutionProvider" in available_providers()
    print(json.dumps(headline))


if __name__ == "__main__":
    main()
