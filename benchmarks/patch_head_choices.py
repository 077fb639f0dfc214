"""How the classifier's patch head was set up: view augmentation, early stopping, INT8.

    .venv/bin/python benchmarks/patch_head_choices.py --data ../shared/data/mtd

Same split and test tiles as the classifier rows of ``mtd.py`` (seed 0, 30 % test). The
feature views are extracted once per augmentation (as the trainer does it: ONNX Runtime),
then heads are fitted with ``fit_head`` under each setting and two head seeds, and scored on
the test tiles (defect AUROC, recall at 1 % false reject). Last, the default head is scored
on features from INT8 copies of the feature extractor (all of it quantised, or its last
blocks kept in float), with the feature error in units of the head's per-channel std.
Prints one table and one JSON line; writes them to ``--output``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mtd import GOOD, collect, label_of

from workers.ml.export import export_onnx, quantize_int8
from workers.ml.hyperparameters import DEFAULT_HYPERPARAMETERS
from workers.ml.metrics import binary_auroc, recall_at_false_reject
from workers.ml.networks import PatchClassifierNet
from workers.ml.trainers.common import forward_only, load_images, to_tensor
from workers.ml.trainers.patch_classifier import (
    _Features,
    _fit_temperature,
    extract_views,
    fit_head,
    load_optional_masks,
    prepare_head_data,
)
from workers.ml.training import RunControl, stratified_split


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "patch-head-choices.txt")
    args = parser.parse_args()
    torch.set_num_threads(2)
    lines: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    samples = collect(args.data)
    labels = [label_of(s) for s in samples]
    names = [GOOD, *sorted(set(labels) - {GOOD})]
    train_idx, test_idx = stratified_split(labels, 0.3, 0)
    train_set, test_set = [samples[i] for i in train_idx], [samples[i] for i in test_idx]
    log(f"Patch-head choices, MTD {len(samples)} images, {platform.machine()}, {time.strftime('%Y-%m-%d %H:%M:%S')}")
    size = (320, 320)
    control = RunControl(None, None)
    images = load_images(train_set, size, control)
    test_images = load_images(test_set, size, control)
    masks, marked = load_optional_masks(train_set, size, GOOD)
    train_labels = [label_of(s) for s in train_set]
    targets = np.array([names.index(label) for label in train_labels])
    truth = np.array([label_of(s) != GOOD for s in test_set])
    fit_idx, val_idx = stratified_split(train_labels, 0.2, 0)
    base: dict[str, Any] = dict(DEFAULT_HYPERPARAMETERS["classifier"])
    torch.manual_seed(0)
    template = PatchClassifierNet(len(names), taps=[12], neighbourhood=3, hidden=128, pretrained=True).eval()
    forward = forward_only(_Features(template), size, torch.device("cpu"))
    blank = np.zeros(test_images.shape[:3], np.uint8)
    test_features = extract_views(
        forward, test_images, blank, views=1, augment="flips", strength=0.0, seed=0, control=control
    )[0][0].float()
    data = {}
    for augment in ("flips", "albumentations"):
        started = time.perf_counter()
        params = {**base, "view_augment": augment}
        data[augment] = prepare_head_data(
            template, images, masks, marked, targets, fit_idx, val_idx, params=params, control=control, seed=0
        )
        log(f"feature views ({augment}): {time.perf_counter() - started:.0f} s for 4 views + validation")

    def score(network: PatchClassifierNet, features: torch.Tensor) -> tuple[float, float]:
        with torch.inference_mode():
            logits = network.patch_logits(features)
        probabilities = PatchClassifierNet.image_probabilities(logits, float(network.temperature)).numpy()
        defect = 1.0 - probabilities[:, 0]
        return binary_auroc(truth.astype(int), defect), recall_at_false_reject(defect[~truth], defect[truth], 0.01)

    def fitted(augment: str, seed: int, **overrides: Any) -> tuple[PatchClassifierNet, dict[str, float], float]:
        network = copy.deepcopy(template)
        started = time.perf_counter()
        report = fit_head(
            network, data[augment], params={**base, **overrides}, control=RunControl(None, None), seed=seed
        )
        with torch.inference_mode():
            val_logits = network.patch_logits(data[augment].val_features.float())
        network.temperature.fill_(_fit_temperature(val_logits, data[augment].val_classes))
        return network, report, time.perf_counter() - started

    rows = []
    default_head: PatchClassifierNet | None = None
    settings: list[tuple[str, str, dict[str, Any]]] = [
        ("flips + photometric views, patience 20 (default)", "flips", {}),
        ("flips + photometric views, no early stop", "flips", {"patience": 1000}),
        ("whole albumentations pipeline views", "albumentations", {}),
    ]
    for title, augment, overrides in settings:
        for seed in (0, 1):
            network, report, seconds = fitted(augment, seed, **overrides)
            if default_head is None:
                default_head = network
            auroc, recall = score(network, test_features)
            rows.append((f"{title}, seed {seed}", auroc, recall, int(report["best_epoch"]), seconds))
    log("")
    log(f"{'setting':<58} | {'AUROC':>6} | {'recall @1% FR':>13} | {'best epoch':>10} | {'fit s':>5}")
    log(f"{'-' * 58}-|-{'-' * 6}-|-{'-' * 13}-|-{'-' * 10}-|-{'-' * 5}")
    for title, auroc, recall, epoch, seconds in rows:
        log(f"{title:<58} | {auroc:>6.4f} | {recall:>13.4f} | {epoch:>10} | {seconds:>5.0f}")

    assert default_head is not None
    log("")
    log("INT8 feature extractor under the default head (seed 0):")
    calibration = to_tensor(images[np.random.default_rng(0).permutation(len(images))[:16]]).numpy()
    int8_rows: dict[str, tuple[float, float]] = {"fp32": score(default_head, test_features)}
    with tempfile.TemporaryDirectory() as scratch:
        fp32_path, int8_path = Path(scratch) / "features.onnx", Path(scratch) / "features.int8.onnx"
        export_onnx(_Features(default_head), fp32_path, input_size=size, output_names=["out"])
        log(f"{'extractor':<40} | {'feature rms error (std)':>23} | {'AUROC':>6} | {'recall @1% FR':>13}")
        log(f"{'fp32':<40} | {0.0:>23.3f} | {int8_rows['fp32'][0]:>6.4f} | {int8_rows['fp32'][1]:>13.4f}")
        for title, float_modules in (
            ("int8, all of it", []),
            (
                "int8, blocks 11-12 in float",
                ["/features/encoder/blocks.11/", "/features/encoder/blocks.12/"],
            ),
        ):
            batches = [calibration[i : i + 4] for i in range(0, len(calibration), 4)]
            quantize_int8(fp32_path, int8_path, batches, float_modules=float_modules)
            session = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
            quantised = torch.from_numpy(
                np.concatenate(
                    [
                        session.run(None, {"images": to_tensor(test_images[i : i + 16]).numpy()})[0]
                        for i in range(0, len(test_images), 16)
                    ]
                )
            )
            error = float(((quantised - test_features) / default_head.feature_std).pow(2).mean().sqrt())
            int8_rows[title] = score(default_head, quantised)
            log(f"{title:<40} | {error:>23.3f} | {int8_rows[title][0]:>6.4f} | {int8_rows[title][1]:>13.4f}")
    log("")
    default_rows = [row for row in rows if row[0].startswith(settings[0][0])]
    log(
        json.dumps(
            {
                "default_recall_min": round(min(r[2] for r in default_rows), 4),
                "default_auroc_min": round(min(r[1] for r in default_rows), 4),
                "int8_recall": round(int8_rows["int8, all of it"][1], 4),
            }
        )
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
