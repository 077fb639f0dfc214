"""Benchmark of the three model kinds on the Magnetic Tile Defect dataset (MTD).

Run by hand, never in CI (it needs ../shared and ~30 minutes on 2 CPU cores):

    .venv/bin/python benchmarks/mtd.py --data ../shared/data/mtd

Protocols:
- anomaly: DifferNet protocol. Train on the good images listed in
  ``differnet_train_good.txt``; test on every other image (good and defect).
- defect bank: the anomaly detector trained on the classifier's train part, defects with
  their masks included (they fill its defect bank), tested on the classifier's test part;
- classifier and segmenter: one stratified, seeded split of all images (``--test-fraction``);
  the segmenter trains on the defect images of the train part (plus some goods) and is
  scored on the defect images of the test part.

Prints one table, then one JSON line, and writes the same text to ``--output``.
Timings are wall-clock on whatever else the machine is doing; say so when quoting them.
"""

from __future__ import annotations

import os

# Must be set before torch/libgomp start: with spinning OpenMP workers a busy 2-core
# machine slows PyTorch down by up to 10x. Training runs under it; the speed rows are
# timed in a child process with OpenMP's default policy (classifier_timing.py), because
# PASSIVE triples PyTorch's batch-1 latency and would flatter ONNX Runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.ml.imaging import read_image, read_mask, to_batch
from workers.ml.inference import OnnxInferencer, load_inferencer
from workers.ml.metrics import (
    binary_auroc,
    classification_report,
    mask_iou_dice,
    pixel_auroc,
    recall_at_false_reject,
    threshold_for_false_reject,
)
from workers.ml.training import stratified_split, train
from workers.ml.types import Sample

GOOD = "Free"  # MT_Free holds the defect-free tiles
CLASSES = ("Free", "Blowhole", "Break", "Crack", "Fray", "Uneven")


def collect(root: Path) -> list[Sample]:
    """Every image of the dataset as a Sample (mask path for defect classes)."""
    samples = []
    for name in CLASSES:
        for image in sorted((root / f"MT_{name}" / "Imgs").glob("*.jpg")):
            mask = image.with_suffix(".png")
            samples.append(
                Sample(
                    image_path=image,
                    label=None if name == GOOD else name,
                    mask_path=mask if (name != GOOD and mask.exists()) else None,
                )
            )
    return samples


def label_of(sample: Sample) -> str:
    return sample.label or GOOD


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def load_mask(sample: Sample) -> np.ndarray:
    image = read_image(sample.image_path)
    return read_mask(sample.mask_path, sample.polygons, image.shape[:2])


def run_anomaly(
    root: Path,
    samples: Sequence[Sample],
    work: Path,
    seed: int,
    log: Callable[[str], None],
    hyperparameters: dict[str, Any] | None = None,
    name: str = "anomaly",
) -> dict[str, Any]:
    listed = {line.strip() for line in (root / "differnet_train_good.txt").read_text().splitlines() if line.strip()}
    fit = [s for s in samples if s.label is None and s.image_path.name in listed]
    test = [s for s in samples if not (s.label is None and s.image_path.name in listed)]
    log(f"anomaly: train {len(fit)} good, test {len(test)} ({sum(s.label is not None for s in test)} defect)")
    result, seconds = timed(
        lambda: train(
            kind="anomaly",
            samples=fit,
            good_class=GOOD,
            out_dir=work / name,
            hyperparameters=hyperparameters,
            seed=seed,
        )
    )
    inferencer = load_inferencer(work / name, result.artifacts)
    assert isinstance(inferencer, OnnxInferencer)
    scores, maps, masks = [], [], []
    images = [read_image(sample.image_path) for sample in test]
    inferencer.predict(images[:2])  # warm-up
    start = time.perf_counter()
    for image in images:
        # Batch 1, the station's case: pre-processing, ONNX Runtime, post-processing
        # (JPEG decoding excluded).
        prediction = inferencer.predict([image])[0]
        scores.append(prediction.anomaly_score)
    per_image_ms = (time.perf_counter() - start) * 1000.0 / len(test)
    # The same with ONNX Runtime's threads spinning between runs (LOUPE_INFERENCE_SPIN).
    spinning = load_inferencer(work / name, result.artifacts, allow_spinning=True)
    spinning.predict(images[:2])
    start = time.perf_counter()
    for image in images:
        spinning.predict([image])
    spin_ms = (time.perf_counter() - start) * 1000.0 / len(test)
    del spinning
    for sample, image in zip(test, images, strict=True):
        # Pixel AUROC on the raw patch distances (the [0, 1] heatmap is clipped, which
        # would tie the extremes), resized to the image like the heatmap.
        _, patch_scores = inferencer.forward_batch(to_batch([image], inferencer.input_size))
        maps.append(cv2.resize(patch_scores[0, 0], (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR))
        masks.append(load_mask(sample))
    truth = np.array([s.label is not None for s in test], dtype=int)
    score_array = np.asarray(scores, dtype=np.float64)
    threshold = float(inferencer.manifest["thresholds"]["image_score"])
    return {
        "image_auroc": binary_auroc(truth, score_array),
        "pixel_auroc": pixel_auroc(maps, masks),
        "recall_at_1pct_fr": recall_at_false_reject(score_array[truth == 0], score_array[truth == 1], 0.01),
        "recall_at_trained_threshold": float((score_array[truth == 1] >= threshold).mean()),
        "false_reject_at_trained_threshold": float((score_array[truth == 0] >= threshold).mean()),
        "ms_per_image": per_image_ms,
        "ms_per_image_spinning": spin_ms,
        "train_seconds": seconds,
        "hyperparameters": result.hyperparameters,
    }


def run_defect_bank(
    train_set: Sequence[Sample],
    test_set: Sequence[Sample],
    work: Path,
    seed: int,
    log: Callable[[str], None],
    hyperparameters: dict[str, Any] | None = None,
    name: str = "defect_bank",
) -> dict[str, Any]:
    """The anomaly detector given the labelled defects too (their masks fill its defect bank),
    on the classifier's split: the same test parts, so the two defect detectors compare."""
    log(f"defect bank: train {len(train_set)} ({sum(s.label is not None for s in train_set)} defects), "
        f"test {len(test_set)}")  # fmt: skip
    result, seconds = timed(
        lambda: train(
            kind="anomaly",
            samples=train_set,
            good_class=GOOD,
            out_dir=work / name,
            hyperparameters=hyperparameters,
            seed=seed,
        )
    )
    inferencer = load_inferencer(work / name, result.artifacts)
    assert isinstance(inferencer, OnnxInferencer)
    images = [read_image(sample.image_path) for sample in test_set]
    inferencer.predict(images[:2])  # warm-up
    start = time.perf_counter()
    scores = np.array([inferencer.predict([image])[0].anomaly_score for image in images], dtype=np.float64)
    per_image_ms = (time.perf_counter() - start) * 1000.0 / len(images)
    truth = np.array([s.label is not None for s in test_set])
    threshold = float(inferencer.manifest["thresholds"]["image_score"])
    at_1pct = threshold_for_false_reject(scores[~truth], 0.01)
    per_class: dict[str, list[bool]] = {}
    for sample, score in zip(test_set, scores, strict=True):
        if sample.label is not None:
            per_class.setdefault(sample.label, []).append(bool(score >= at_1pct))
    return {
        "image_auroc": binary_auroc(truth.astype(int), scores),
        "recall_at_1pct_fr": recall_at_false_reject(scores[~truth], scores[truth], 0.01),
        "recall_at_trained_threshold": float((scores[truth] >= threshold).mean()),
        "false_reject_at_trained_threshold": float((scores[~truth] >= threshold).mean()),
        "recall_per_class": {name: float(np.mean(hits)) for name, hits in sorted(per_class.items())},
        "defect_bank_size": result.metrics.get("defect_bank_size"),
        "projection_dims": result.metrics.get("projection_dims"),
        "ms_per_image": per_image_ms,
        "train_seconds": seconds,
    }


def run_classifier(
    train_set: Sequence[Sample],
    test_set: Sequence[Sample],
    work: Path,
    seed: int,
    log: Callable[[str], None],
    hyperparameters: dict[str, Any],
    name: str = "classifier",
) -> dict[str, Any]:
    log(f"{name}: train {len(train_set)}, test {len(test_set)}, hyperparameters {hyperparameters}")

    def progress(update: Any) -> None:
        log(
            f"  {name} epoch {update.epoch}/{update.epochs} loss {update.loss:.4f} {update.metric_name} {update.metric}"
        )

    result, seconds = timed(
        lambda: train(
            kind="classifier",
            samples=train_set,
            good_class=GOOD,
            out_dir=work / name,
            hyperparameters=hyperparameters,
            progress=progress,
            seed=seed,
        )
    )
    onnx_fp32 = load_inferencer(work / name, result.artifacts)
    onnx_int8 = load_inferencer(work / name, result.artifacts, int8=True)
    assert isinstance(onnx_fp32, OnnxInferencer) and isinstance(onnx_int8, OnnxInferencer)
    class_names = onnx_fp32.class_names
    targets = np.array([class_names.index(label_of(s)) for s in test_set])
    images = [read_image(s.image_path) for s in test_set]
    batch = to_batch(images, onnx_fp32.input_size)
    threshold = float(onnx_fp32.manifest["thresholds"]["defect_probability"])
    reports = {}
    for precision, inferencer in (("fp32", onnx_fp32), ("int8", onnx_int8)):
        probabilities = np.concatenate(
            [inferencer.forward_batch(batch[i : i + 32])[0] for i in range(0, len(batch), 32)]
        )
        report = classification_report(probabilities, targets, class_names, defect_threshold=threshold)
        good = targets == 0
        defect_probability = 1.0 - probabilities[:, 0].astype(np.float64)
        report["recall_at_1pct_fr"] = recall_at_false_reject(defect_probability[good], defect_probability[~good], 0.01)
        reports[precision] = report
    timing = timing_in_child(work / name, result.artifacts, [s.image_path for s in test_set[:16]])
    return {
        "fp32": reports["fp32"],
        "int8": reports["int8"],
        "timing": timing,
        "train_seconds": seconds,
        "threshold": threshold,
        "train_metrics": result.metrics,
    }


def timing_in_child(artifact_dir: Path, artifacts: dict[str, str], image_paths: Sequence[Path]) -> dict[str, float]:
    """``classifier_timing`` in a fresh process with OpenMP's default wait policy."""
    spec = json.dumps({"dir": str(artifact_dir), "artifacts": artifacts, "images": [str(p) for p in image_paths]})
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    child = Path(__file__).with_name("classifier_timing.py")
    done = subprocess.run([sys.executable, str(child), spec], env=env, capture_output=True, text=True, check=True)
    timing: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return timing


def run_segmenter(
    train_set: Sequence[Sample],
    test_set: Sequence[Sample],
    work: Path,
    seed: int,
    log: Callable[[str], None],
    hyperparameters: dict[str, Any],
) -> dict[str, Any]:
    log(f"segmenter: train {len(train_set)} (defects {sum(s.label is not None for s in train_set)})")

    def progress(update: Any) -> None:
        log(
            f"  segmenter epoch {update.epoch}/{update.epochs} loss {update.loss:.4f} "
            f"{update.metric_name} {update.metric}"
        )

    result, seconds = timed(
        lambda: train(
            kind="segmenter",
            samples=train_set,
            good_class=GOOD,
            out_dir=work / "segmenter",
            hyperparameters=hyperparameters,
            progress=progress,
            seed=seed,
        )
    )
    inferencer = load_inferencer(work / "segmenter", result.artifacts)
    defects = [s for s in test_set if s.label is not None]
    ious, dices = [], []
    for sample in defects:
        prediction = inferencer.predict([read_image(sample.image_path)])[0]
        assert prediction.mask is not None
        iou, dice = mask_iou_dice(prediction.mask[None] > 0, load_mask(sample)[None] > 0)
        ious.append(iou)
        dices.append(dice)
    per_class: dict[str, list[float]] = {}
    for sample, iou in zip(defects, ious, strict=True):
        per_class.setdefault(label_of(sample), []).append(iou)
    return {
        "iou": float(np.mean(ious)),
        "dice": float(np.mean(dices)),
        "iou_per_class": {k: float(np.mean(v)) for k, v in sorted(per_class.items())},
        "test_defects": len(defects),
        "train_seconds": seconds,
    }


def classifier_rows(title: str, classifier: dict[str, Any]) -> list[tuple[str, str]]:
    fp32, int8, timing = classifier["fp32"], classifier["int8"], classifier["timing"]

    def fmt(value: float) -> str:
        return f"{value:.4f}"

    return [
        (f"{title}: accuracy fp32 / int8 (at trained threshold)", f"{fmt(fp32['accuracy'])} / {fmt(int8['accuracy'])}"),
        (
            f"{title}: defect recall @1% false reject fp32 / int8",
            f"{fmt(fp32['recall_at_1pct_fr'])} / {fmt(int8['recall_at_1pct_fr'])}",
        ),
        (
            f"{title}: recall / false reject @trained threshold",
            f"{fmt(fp32['defect_recall'])} / {fmt(fp32['false_reject'])}",
        ),
        (f"{title}: defect AUROC", fmt(fp32["defect_auroc"])),
        (f"{title}: per-class F1", ", ".join(f"{k} {v:.3f}" for k, v in fp32["f1"].items())),
        (f"{title}: train minutes", f"{classifier['train_seconds'] / 60:.2f}"),
        (
            f"{title}: ms/image eager / ORT fp32 / ORT int8, batch 1",
            f"{timing['eager_b1']:.2f} / {timing['ort_fp32_b1']:.2f} / {timing['ort_int8_b1']:.2f}",
        ),
        (
            f"{title}: ms/image eager / ORT fp32 / ORT int8, batch 16",
            f"{timing['eager_b16']:.2f} / {timing['ort_fp32_b16']:.2f} / {timing['ort_int8_b16']:.2f}",
        ),
        (f"{title}: ORT fp32 speed-up over eager, batch 1", f"{timing['eager_b1'] / timing['ort_fp32_b1']:.1f}x"),
        (
            f"{title}: ORT fp32 spinning threads (LOUPE_INFERENCE_SPIN) ms/image b1 / b16, speed-up b1",
            f"{timing['ort_fp32_spin_b1']:.2f} / {timing['ort_fp32_spin_b16']:.2f}, "
            f"{timing['eager_b1'] / timing['ort_fp32_spin_b1']:.1f}x",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="MTD root (holds MT_* folders)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "mtd-latest.txt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--kinds", default="anomaly,defect_bank,classifier,classifier_global,segmenter")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--quick", action="store_true", help="1 epoch per supervised kind: checks the script, not the models"
    )
    parser.add_argument(
        "--hyperparameters",
        type=json.loads,
        default={},
        help='JSON overrides for the supervised kinds, e.g. \'{"epochs": 40, "max_minutes": 20}\' (experiments)',
    )
    parser.add_argument(
        "--anomaly-hyperparameters",
        type=json.loads,
        default={},
        help="JSON overrides for the anomaly detector (both rows), e.g. '{\"bank_size\": 40000}'",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    samples = collect(args.data)
    log(
        f"MTD benchmark, seed {args.seed}, {len(samples)} images, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} (speed rows: default policy), started {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    labels = [label_of(s) for s in samples]
    train_idx, test_idx = stratified_split(labels, args.test_fraction, args.seed)
    train_set = [samples[i] for i in train_idx]
    test_set = [samples[i] for i in test_idx]
    kinds = args.kinds.split(",")
    quick: dict[str, Any] = {**({"epochs": 1} if args.quick else {}), **args.hyperparameters}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mtd-bench-") as scratch:
        work = Path(scratch)
        if "anomaly" in kinds:
            results["anomaly"] = run_anomaly(args.data, samples, work, args.seed, log, args.anomaly_hyperparameters)
        if "anomaly_knn" in kinds:  # the goods-only detector scoring by nearest-neighbour distance
            results["anomaly_knn"] = run_anomaly(
                args.data,
                samples,
                work,
                args.seed,
                log,
                {**args.anomaly_hyperparameters, "scorer": "knn"},
                "anomaly_knn",
            )
        if "anomaly_320" in kinds:  # the goods-only detector at 320 x 320 px instead of 256
            results["anomaly_320"] = run_anomaly(
                args.data,
                samples,
                work,
                args.seed,
                log,
                {**args.anomaly_hyperparameters, "input_size": [320, 320]},
                "anomaly_320",
            )
        if "defect_bank" in kinds:
            results["defect_bank"] = run_defect_bank(
                train_set, test_set, work, args.seed, log, args.anomaly_hyperparameters
            )
        if "defect_bank_knn" in kinds:  # the same without the goods' flow: nearest-neighbour banks only
            results["defect_bank_knn"] = run_defect_bank(
                train_set,
                test_set,
                work,
                args.seed,
                log,
                {**args.anomaly_hyperparameters, "flow_with_defect_bank": False},
                name="defect_bank_knn",
            )
        if "defect_bank_256" in kinds:  # the defect-bank detector at 256 x 256 px instead of 320
            results["defect_bank_256"] = run_defect_bank(
                train_set,
                test_set,
                work,
                args.seed,
                log,
                {**args.anomaly_hyperparameters, "input_size_with_defect_bank": [256, 256]},
                name="defect_bank_256",
            )
        if "defect_bank_unprojected" in kinds:  # the same detector searching all 192 feature channels
            results["defect_bank_unprojected"] = run_defect_bank(
                train_set,
                test_set,
                work,
                args.seed,
                log,
                {**args.anomaly_hyperparameters, "projection_dims_with_defect_bank": 0},
                name="defect_bank_unprojected",
            )
        if "classifier" in kinds:
            # The default (patch) head, with its INT8 copy made to measure what INT8 costs it.
            results["classifier"] = run_classifier(train_set, test_set, work, args.seed, log, {"int8": True, **quick})
        if "classifier_global" in kinds:  # Lite0 fine-tuned end to end on image labels
            results["classifier_global"] = run_classifier(
                train_set, test_set, work, args.seed, log, {"head": "global", **quick}, name="classifier_global"
            )
        if "segmenter" in kinds:
            results["segmenter"] = run_segmenter(train_set, test_set, work, args.seed, log, quick)

    def fmt(value: float | None, digits: int = 4) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    anomaly = results.get("anomaly", {})
    classifier = results.get("classifier", {})
    segmenter = results.get("segmenter", {})
    bank = results.get("defect_bank", {})
    timing = classifier.get("timing", {})
    rows: list[tuple[str, str]] = []
    if anomaly:
        rows += [
            ("anomaly image AUROC (DifferNet protocol)", fmt(anomaly["image_auroc"])),
            ("anomaly pixel AUROC", fmt(anomaly["pixel_auroc"])),
            ("anomaly defect recall @1% false reject (test-set threshold)", fmt(anomaly["recall_at_1pct_fr"])),
            (
                "anomaly recall / false reject @trained threshold",
                f"{fmt(anomaly['recall_at_trained_threshold'])} / {fmt(anomaly['false_reject_at_trained_threshold'])}",
            ),
            ("anomaly scoring ms/image (ORT, batch 1, incl. pre/post)", fmt(anomaly["ms_per_image"], 2)),
            (
                "anomaly scoring ms/image, spinning threads (LOUPE_INFERENCE_SPIN)",
                fmt(anomaly["ms_per_image_spinning"], 2),
            ),
            ("anomaly train minutes", fmt(anomaly["train_seconds"] / 60, 2)),
        ]
    if bank:
        rows += [
            ("anomaly + defect bank, classifier's split: defect AUROC", fmt(bank["image_auroc"])),
            ("anomaly + defect bank: defect recall @1% false reject", fmt(bank["recall_at_1pct_fr"])),
            (
                "anomaly + defect bank: recall / false reject @trained threshold",
                f"{fmt(bank['recall_at_trained_threshold'])} / {fmt(bank['false_reject_at_trained_threshold'])}",
            ),
            (
                "anomaly + defect bank: recall @1% FR per class",
                ", ".join(f"{k} {v:.3f}" for k, v in bank["recall_per_class"].items()),
            ),
            (
                "anomaly + defect bank: bank rows, projection dims, ms/image, train minutes",
                f"{bank['defect_bank_size']}, {bank['projection_dims']}, {bank['ms_per_image']:.2f}, "
                f"{bank['train_seconds'] / 60:.2f}",
            ),
        ]
    knn = results.get("anomaly_knn", {})
    if knn:
        rows.append(
            (
                "anomaly, nearest-neighbour scorer: AUROC, pixel AUROC, recall @1% FR, ms/image, train minutes",
                f"{fmt(knn['image_auroc'])}, {fmt(knn['pixel_auroc'])}, {fmt(knn['recall_at_1pct_fr'])}, "
                f"{knn['ms_per_image']:.2f}, {knn['train_seconds'] / 60:.2f}",
            )
        )
    large = results.get("anomaly_320", {})
    if large:
        rows.append(
            (
                "anomaly at 320 px: AUROC, pixel AUROC, recall @1% FR, ms/image, train minutes",
                f"{fmt(large['image_auroc'])}, {fmt(large['pixel_auroc'])}, {fmt(large['recall_at_1pct_fr'])}, "
                f"{large['ms_per_image']:.2f}, {large['train_seconds'] / 60:.2f}",
            )
        )
    bank_knn = results.get("defect_bank_knn", {})
    if bank_knn:
        rows.append(
            (
                "defect bank without the flow (kNN banks only): AUROC, recall @1% FR, ms/image, train minutes",
                f"{fmt(bank_knn['image_auroc'])}, {fmt(bank_knn['recall_at_1pct_fr'])}, "
                f"{bank_knn['ms_per_image']:.2f}, {bank_knn['train_seconds'] / 60:.2f}",
            )
        )
        rows.append(
            (
                "defect bank without the flow: recall @1% FR per class",
                ", ".join(f"{k} {v:.3f}" for k, v in bank_knn["recall_per_class"].items()),
            )
        )
    bank_small = results.get("defect_bank_256", {})
    if bank_small:
        rows.append(
            (
                "defect bank at 256 px: AUROC, recall @1% FR, ms/image, train minutes",
                f"{fmt(bank_small['image_auroc'])}, {fmt(bank_small['recall_at_1pct_fr'])}, "
                f"{bank_small['ms_per_image']:.2f}, {bank_small['train_seconds'] / 60:.2f}",
            )
        )
    unprojected = results.get("defect_bank_unprojected", {})
    if unprojected:
        rows.append(
            (
                "defect bank unprojected (192-d): AUROC, recall @1% FR, ms/image",
                f"{fmt(unprojected['image_auroc'])}, {fmt(unprojected['recall_at_1pct_fr'])}, "
                f"{unprojected['ms_per_image']:.2f}",
            )
        )
    for key, title in (("classifier", "classifier, patch head"), ("classifier_global", "classifier, global head")):
        if key in results:
            rows += classifier_rows(title, results[key])
    if segmenter:
        rows += [
            ("segmenter mean IoU / Dice on test defect images", f"{fmt(segmenter['iou'])} / {fmt(segmenter['dice'])}"),
            ("segmenter IoU per class", ", ".join(f"{k} {v:.3f}" for k, v in segmenter["iou_per_class"].items())),
            ("segmenter train minutes", fmt(segmenter["train_seconds"] / 60, 2)),
        ]
    width = max(len(name) for name, _ in rows) if rows else 0
    log("")
    log(f"{'metric'.ljust(width)} | value")
    log(f"{'-' * width}-|-{'-' * 30}")
    for name, value in rows:
        log(f"{name.ljust(width)} | {value}")
    log("")
    global_head = results.get("classifier_global", {})
    train_minutes = [
        r["train_seconds"] / 60 for r in (anomaly, knn, large, bank, bank_knn, classifier, global_head, segmenter) if r
    ]
    summary = {
        "anomaly_auroc": round(anomaly["image_auroc"], 4) if anomaly else None,
        "pixel_auroc": round(anomaly["pixel_auroc"], 4) if anomaly else None,
        "classifier_recall_at_1pct_fr": round(classifier["fp32"]["recall_at_1pct_fr"], 4) if classifier else None,
        "global_head_recall_at_1pct_fr": round(global_head["fp32"]["recall_at_1pct_fr"], 4) if global_head else None,
        "global_head_int8_ms_b16": round(global_head["timing"]["ort_int8_b16"], 2) if global_head else None,
        "segmenter_iou": round(segmenter["iou"], 4) if segmenter else None,
        "ort_speedup_b1": round(timing["eager_b1"] / timing["ort_fp32_b1"], 2) if timing else None,
        "ort_speedup_b1_spinning": round(timing["eager_b1"] / timing["ort_fp32_spin_b1"], 2) if timing else None,
        "int8_ms_b16": round(timing["ort_int8_b16"], 2) if timing else None,
        "anomaly_ms": round(anomaly["ms_per_image"], 2) if anomaly else None,
        "anomaly_recall_at_1pct_fr": round(anomaly["recall_at_1pct_fr"], 4) if anomaly else None,
        "anomaly_knn_auroc": round(knn["image_auroc"], 4) if knn else None,
        "anomaly_knn_recall_at_1pct_fr": round(knn["recall_at_1pct_fr"], 4) if knn else None,
        "anomaly_320_auroc": round(large["image_auroc"], 4) if large else None,
        "anomaly_320_recall_at_1pct_fr": round(large["recall_at_1pct_fr"], 4) if large else None,
        "anomaly_320_ms": round(large["ms_per_image"], 2) if large else None,
        "defect_bank_auroc": round(bank["image_auroc"], 4) if bank else None,
        "defect_bank_recall_at_1pct_fr": round(bank["recall_at_1pct_fr"], 4) if bank else None,
        "defect_bank_ms": round(bank["ms_per_image"], 2) if bank else None,
        "defect_bank_256_auroc": round(bank_small["image_auroc"], 4) if bank_small else None,
        "defect_bank_256_recall_at_1pct_fr": round(bank_small["recall_at_1pct_fr"], 4) if bank_small else None,
        "defect_bank_256_ms": round(bank_small["ms_per_image"], 2) if bank_small else None,
        "defect_bank_knn_auroc": round(bank_knn["image_auroc"], 4) if bank_knn else None,
        "defect_bank_knn_recall_at_1pct_fr": round(bank_knn["recall_at_1pct_fr"], 4) if bank_knn else None,
        "defect_bank_knn_ms": round(bank_knn["ms_per_image"], 2) if bank_knn else None,
        "train_minutes_max": round(max(train_minutes), 2) if train_minutes else None,
    }
    log(json.dumps(summary))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
