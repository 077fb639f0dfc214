"""Which patch grid the classifier's patch head should look at: feature taps and input size.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/patch_head_scales.py --data ../shared/data/mtd

Same split and test tiles as the classifier rows of ``mtd.py`` (seed 0, 30 % test). For
each setting (Lite0 taps, square input size, whether each patch also sees its tile's mean
patch: ``context``) the feature views are extracted as the trainer
does it (ONNX Runtime, 4 views: flips + photometric), the default head is fitted with two
seeds, temperature-scaled on the validation split and scored on the test tiles: defect AUROC,
recall at 1 % false reject, and which defect classes the misses at that threshold belong to.
The extraction column is the feature pass per image in ONNX Runtime (batch 16, both cores).
Prints one table and one JSON line; writes them to ``--output``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import collections
import copy
import itertools
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mtd import GOOD, collect, label_of

from workers.ml.hyperparameters import DEFAULT_HYPERPARAMETERS
from workers.ml.metrics import binary_auroc, recall_at_false_reject, threshold_for_false_reject
from workers.ml.networks import PatchClassifierNet
from workers.ml.trainers.common import forward_only, load_images
from workers.ml.trainers.patch_classifier import (
    _Features,
    _fit_temperature,
    extract_views,
    fit_head,
    load_optional_masks,
    prepare_head_data,
)
from workers.ml.training import RunControl, stratified_split

DEFAULT_SETTINGS = "12@320,10@320,10+12@320,12@448,12@320+context,10+12@320+context"


def parse_settings(text: str) -> list[tuple[list[int], int, bool]]:
    """``"10+12@320+context,12@448"`` -> [([10, 12], 320, True), ([12], 448, False)]."""
    settings = []
    for item in text.split(","):
        taps, _, rest = item.strip().partition("@")
        side, _, flag = rest.partition("+")
        if flag not in ("", "context"):
            raise SystemExit(f"unknown setting flag {flag!r} in {item!r}")
        settings.append(([int(t) for t in taps.split("+")], int(side), flag == "context"))
    return settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument(
        "--settings",
        default=DEFAULT_SETTINGS,
        help="comma-separated TAPS@SIZE[+context], taps joined by '+' (default: %(default)s)",
    )
    parser.add_argument(
        "--unmarked-weights",
        default="0",
        help="comma-separated unmarked_weight values fitted side by side on the same views (default: %(default)s)",
    )
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "patch-head-scales.txt")
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
    train_labels = [label_of(s) for s in train_set]
    test_labels = np.array([label_of(s) for s in test_set])
    targets = np.array([names.index(label) for label in train_labels])
    truth = test_labels != GOOD
    fit_idx, val_idx = stratified_split(train_labels, 0.2, 0)
    base: dict[str, Any] = dict(DEFAULT_HYPERPARAMETERS["classifier"])
    log(
        f"Patch-head scales, MTD {len(samples)} images ({int(truth.sum())} test defects, "
        f"{int((~truth).sum())} test goods), {platform.machine()}, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    control = RunControl(None, None)
    rows: list[dict[str, Any]] = []
    settings = parse_settings(args.settings)
    unmarked_weights = [float(w) for w in args.unmarked_weights.split(",")]
    for taps, side, context in settings:
        size = (side, side)
        images = load_images(train_set, size, control)
        test_images = load_images(test_set, size, control)
        masks, marked = load_optional_masks(train_set, size, GOOD)
        torch.manual_seed(0)
        template = PatchClassifierNet(
            len(names), taps=taps, neighbourhood=3, hidden=128, pretrained=True, context=context
        ).eval()
        forward = forward_only(_Features(template), size, torch.device("cpu"))
        started = time.perf_counter()
        blank = np.zeros(test_images.shape[:3], np.uint8)
        test_features = extract_views(
            forward, test_images, blank, views=1, augment="flips", strength=0.0, seed=0, control=control
        )[0][0].float()
        per_image_ms = (time.perf_counter() - started) / len(test_images) * 1000
        started = time.perf_counter()
        data = prepare_head_data(
            template, images, masks, marked, targets, fit_idx, val_idx, params=base, control=control, seed=0
        )
        extract_s = time.perf_counter() - started
        # Each seed's test defect scores, for the ensemble row (the mean over seeds' heads).
        seed_scores: dict[float, list[np.ndarray]] = collections.defaultdict(list)
        for seed, unmarked in itertools.product(range(args.seeds), unmarked_weights):
            network = copy.deepcopy(template)
            started = time.perf_counter()
            params = {**base, "unmarked_weight": unmarked}
            report = fit_head(network, data, params=params, control=RunControl(None, None), seed=seed)
            with torch.inference_mode():
                val_logits = network.patch_logits(data.val_features.float())
            temperature = _fit_temperature(val_logits, data.val_classes)
            fit_s = time.perf_counter() - started
            with torch.inference_mode():
                logits = network.patch_logits(test_features)
            probabilities = PatchClassifierNet.image_probabilities(logits, temperature).numpy()
            defect = 1.0 - probabilities[:, 0]
            seed_scores[unmarked].append(defect)
            auroc = binary_auroc(truth.astype(int), defect)
            recall = recall_at_false_reject(defect[~truth], defect[truth], 0.01)
            threshold = threshold_for_false_reject(defect[~truth], 0.01)
            missed = collections.Counter(test_labels[truth & (defect < threshold)].tolist())
            grid = f"{test_features.shape[-2]}x{test_features.shape[-1]}"
            rows.append(
                {
                    "taps": taps,
                    "size": side,
                    "context": context,
                    "grid": grid,
                    "seed": seed,
                    "unmarked": unmarked,
                    "auroc": auroc,
                    "recall": recall,
                    "missed": dict(sorted(missed.items())),
                    "best_epoch": int(report["best_epoch"]),
                    "extract_ms": per_image_ms,
                    "extract_s": extract_s,
                    "fit_s": fit_s,
                }
            )
            log(
                f"  done: taps {taps} at {side} px, context {context}, unmarked {unmarked}, seed {seed}: AUROC {auroc:.4f}, recall {recall:.4f}, {missed}"
            )
        for unmarked, scores in seed_scores.items():
            if len(scores) < 2:
                continue
            defect = np.mean(scores, axis=0)  # an ensemble of the seeds' heads: mean P(defect)
            threshold = threshold_for_false_reject(defect[~truth], 0.01)
            ensemble = {
                **rows[-1],
                "seed": f"x{len(scores)}",
                "unmarked": unmarked,
                "auroc": binary_auroc(truth.astype(int), defect),
                "recall": recall_at_false_reject(defect[~truth], defect[truth], 0.01),
                "missed": dict(sorted(collections.Counter(test_labels[truth & (defect < threshold)].tolist()).items())),
                "best_epoch": 0,
                "fit_s": sum(r["fit_s"] for r in rows[-len(scores) :]),
            }
            rows.append(ensemble)
            log(f"  ensemble of {len(scores)} heads: AUROC {ensemble['auroc']:.4f}, recall {ensemble['recall']:.4f}")
        del data, test_features
    log("")
    header = (
        f"{'taps':<8} | {'px':>3} | {'context':>7} | {'unmarked':>8} | {'grid':>5} | {'seed':>4} | {'AUROC':>6} | {'recall @1% FR':>13} | "
        f"{'missed at 1% FR':<30} | {'epoch':>5} | {'feat ms/img':>11} | {'views s':>7} | {'fit s':>5}"
    )
    log(header)
    log("-" * len(header))
    for row in rows:
        missed_text = ", ".join(f"{k} {v}" for k, v in row["missed"].items()) or "-"
        log(
            f"{row['taps']!s:<8} | {row['size']:>3} | {'yes' if row['context'] else 'no':>7} | {row['unmarked']:>8} | {row['grid']:>5} | {row['seed']:>4} | {row['auroc']:>6.4f} | "
            f"{row['recall']:>13.4f} | {missed_text:<30} | {row['best_epoch']:>5} | {row['extract_ms']:>11.1f} | "
            f"{row['extract_s']:>7.0f} | {row['fit_s']:>5.0f}"
        )
    log("")
    summary: dict[str, Any] = {}
    for (taps, side, context), unmarked in itertools.product(settings, unmarked_weights):
        mine = [
            r
            for r in rows
            if isinstance(r["seed"], int)
            and r["taps"] == taps
            and r["size"] == side
            and r["context"] == context
            and r["unmarked"] == unmarked
        ]
        key = f"taps{'-'.join(map(str, taps))}_{side}{'_context' if context else ''}"
        if len(unmarked_weights) > 1:
            key += f"_unmarked{unmarked:g}"
        summary[f"{key}_recall_min"] = round(min(r["recall"] for r in mine), 4)
        summary[f"{key}_recall_mean"] = round(float(np.mean([r["recall"] for r in mine])), 4)
        summary[f"{key}_auroc_min"] = round(min(r["auroc"] for r in mine), 4)
    log(json.dumps(summary))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
