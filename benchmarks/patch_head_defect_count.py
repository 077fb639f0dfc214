"""How many labelled defects per class the patch-head classifier needs.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/patch_head_defect_count.py --data ../shared/data/mtd

Same split and test tiles as the classifier rows of ``mtd.py`` (seed 0, 30 % test; the head's
own 20 % validation split inside the training part, kept whole so every fit is judged alike).
The default feature views (Lite0 block 12 at 320 px, 4 views: flips + photometric) of the
training part are extracted once; the default head is then fitted on every training good and
at most N masked defects of each class (``--counts``; 0 = all), drawn at random per seed, and
scored on the test tiles: defect AUROC, recall at 1 % false reject overall and per class (a
class's test defects found at the threshold that rejects 1 % of test goods). This is the curve
behind the classifier's data warning (``workers.ml.sufficiency``). One table, one JSON line;
both written to ``--output``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import copy
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
    HeadData,
    _Features,
    _fit_temperature,
    extract_views,
    fit_head,
    load_optional_masks,
    prepare_head_data,
)
from workers.ml.training import RunControl, stratified_split

SIZE = (320, 320)


def subset(data: HeadData, count: int, seed: int) -> HeadData:
    """Every good and at most ``count`` defects of each class (0: all) of ``data``'s training part."""
    rng = np.random.default_rng(seed)
    classes = data.classes.numpy()
    keep = [np.flatnonzero(classes == 0)]
    for label in sorted(set(classes.tolist()) - {0}):
        members = np.flatnonzero(classes == label)
        keep.append(members if count == 0 else rng.permutation(members)[:count])
    chosen = torch.from_numpy(np.sort(np.concatenate(keep)))
    return HeadData(
        features=data.features[:, chosen],
        cells=data.cells[:, chosen],
        classes=data.classes[chosen],
        marked=data.marked[chosen],
        val_features=data.val_features,
        val_classes=data.val_classes,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--counts", default="3,10,25,0", help="defects per class, 0 = all (default: %(default)s)")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "patch-head-defect-count.txt"
    )
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
    control = RunControl(None, None)
    images = load_images(train_set, SIZE, control)
    test_images = load_images(test_set, SIZE, control)
    masks, marked = load_optional_masks(train_set, SIZE, GOOD)
    fit_counts = {name: int((targets[fit_idx] == k).sum()) for k, name in enumerate(names)}
    log(
        f"Patch head by defects per class, MTD {len(samples)} images; fitted from {fit_counts}; test "
        f"{int(truth.sum())} defects, {int((~truth).sum())} goods; {platform.machine()}, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    torch.manual_seed(0)
    template = PatchClassifierNet(len(names), taps=[12], neighbourhood=3, hidden=128, pretrained=True).eval()
    forward = forward_only(_Features(template), SIZE, torch.device("cpu"))
    blank = np.zeros(test_images.shape[:3], np.uint8)
    test_features = extract_views(
        forward, test_images, blank, views=1, augment="flips", strength=0.0, seed=0, control=control
    )[0][0].float()
    data = prepare_head_data(
        template, images, masks, marked, targets, fit_idx, val_idx, params=base, control=control, seed=0
    )
    defect_names = names[1:]
    rows: list[dict[str, Any]] = []
    for count in [int(c) for c in args.counts.split(",")]:
        for seed in range(args.seeds):
            part = subset(data, count, seed)
            network = copy.deepcopy(template)
            started = time.perf_counter()
            fit_head(network, part, params=base, control=RunControl(None, None), seed=seed)
            with torch.inference_mode():
                temperature = _fit_temperature(network.patch_logits(part.val_features.float()), part.val_classes)
                logits = network.patch_logits(test_features)
            defect = 1.0 - PatchClassifierNet.image_probabilities(logits, temperature).numpy()[:, 0]
            threshold = threshold_for_false_reject(defect[~truth], 0.01)
            row: dict[str, Any] = {
                "count": count or "all",
                "seed": seed,
                "auroc": binary_auroc(truth.astype(int), defect),
                "recall": recall_at_false_reject(defect[~truth], defect[truth], 0.01),
                "per_class": {name: float((defect[test_labels == name] >= threshold).mean()) for name in defect_names},
                "fit_s": time.perf_counter() - started,
            }
            rows.append(row)
            log(f"  {row['count']} per class, seed {seed}: AUROC {row['auroc']:.4f}, recall {row['recall']:.4f}")
    log("")
    header = (
        f"{'defects/class':>13} | seed | {'AUROC':>6} | recall @1% FR | "
        + " | ".join(f"{name[:8]:>8}" for name in defect_names)
        + " | fit s"
    )
    log(header)
    log("-" * len(header))
    for row in rows:
        log(
            f"{row['count']!s:>13} | {row['seed']:>4} | {row['auroc']:>6.4f} | {row['recall']:>13.4f} | "
            + " | ".join(f"{row['per_class'][name]:>8.2f}" for name in defect_names)
            + f" | {row['fit_s']:>5.0f}"
        )
    log("")
    summary: dict[str, Any] = {}
    for count in dict.fromkeys(r["count"] for r in rows):
        mine = [r for r in rows if r["count"] == count]
        summary[f"recall_{count}_per_class"] = round(float(np.mean([r["recall"] for r in mine])), 4)
        summary[f"auroc_{count}_per_class"] = round(float(np.mean([r["auroc"] for r in mine])), 4)
    log(json.dumps(summary))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
