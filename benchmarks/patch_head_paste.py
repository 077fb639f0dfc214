"""Real defects transplanted onto good parts as extra training views for the patch head.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/patch_head_paste.py --data ../shared/data/mtd

Same split and test tiles as the classifier rows of ``mtd.py`` (seed 0, 30 % test; the
head's own 20 % validation split inside the training part). The default feature views of
the training part are extracted once (Lite0 block 12 at 320 px, 4 views: flips +
photometric), then ``--rounds`` transplants per training good
(``workers.ml.synthetic.transplant_defect``: a marked defect of the training part, cut with
a feathered rim, flipped, brightness-matched, blended in where it was or anywhere) with the
same views. The default head is fitted on the plain views and on plain + transplanted views,
side by side with each seed, and scored on the test tiles: defect AUROC, recall at 1 % false
reject and the classes missed there. A few transplants are written to ``--examples`` to look
at. One table, one JSON line; both written to ``--output``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import collections
import copy
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mtd import GOOD, collect, label_of

from workers.ml.hyperparameters import DEFAULT_HYPERPARAMETERS
from workers.ml.metrics import binary_auroc, recall_at_false_reject, threshold_for_false_reject
from workers.ml.networks import PatchClassifierNet
from workers.ml.synthetic import transplant_defect
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


def transplants(
    images: np.ndarray,
    masks: np.ndarray,
    targets: np.ndarray,
    marked: np.ndarray,
    fit_idx: list[int],
    *,
    rounds: int,
    keep_place: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rounds`` transplants onto each good of ``fit_idx``, donors drawn from its marked defects."""
    rng = np.random.default_rng(seed)
    fit = np.asarray(fit_idx)
    goods = fit[targets[fit] == 0]
    donors = fit[(targets[fit] > 0) & marked[fit]]
    out_images, out_masks, out_classes = [], [], []
    for _ in range(rounds):
        for good in goods:
            donor = int(rng.choice(donors))
            image, mask = transplant_defect(images[good], images[donor], masks[donor], rng, keep_place=keep_place)
            out_images.append(image)
            out_masks.append(mask)
            out_classes.append(int(targets[donor]))
    return np.stack(out_images), np.stack(out_masks), np.asarray(out_classes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rounds", default="1", help="comma-separated transplants per good (default: %(default)s)")
    parser.add_argument("--keep-place", type=float, default=0.5)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "patch-head-paste.txt")
    parser.add_argument("--examples", type=Path, default=Path("var/paste-examples"))
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
        f"Patch head with transplanted defects, MTD {len(samples)} images ({int(truth.sum())} test defects, "
        f"{int((~truth).sum())} test goods), {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    control = RunControl(None, None)
    images = load_images(train_set, SIZE, control)
    test_images = load_images(test_set, SIZE, control)
    masks, marked = load_optional_masks(train_set, SIZE, GOOD)
    torch.manual_seed(0)
    template = PatchClassifierNet(len(names), taps=[12], neighbourhood=3, hidden=128, pretrained=True).eval()
    forward = forward_only(_Features(template), SIZE, torch.device("cpu"))
    blank = np.zeros(test_images.shape[:3], np.uint8)
    test_features = extract_views(
        forward, test_images, blank, views=1, augment="flips", strength=0.0, seed=0, control=control
    )[0][0].float()
    started = time.perf_counter()
    plain = prepare_head_data(
        template, images, masks, marked, targets, fit_idx, val_idx, params=base, control=control, seed=0
    )
    log(f"plain views: {tuple(plain.features.shape)} in {time.perf_counter() - started:.0f} s")
    variants: dict[str, HeadData] = {"plain": plain}
    for rounds in [int(r) for r in args.rounds.split(",")]:
        started = time.perf_counter()
        pasted, pasted_masks, pasted_classes = transplants(
            images, masks, targets, marked, fit_idx, rounds=rounds, keep_place=args.keep_place, seed=1
        )
        args.examples.mkdir(parents=True, exist_ok=True)
        for k in range(0, len(pasted), max(1, len(pasted) // 6))[:6]:
            outline = pasted[k].copy()
            contours, _ = cv2.findContours(pasted_masks[k], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(outline, contours, -1, (255, 0, 0), 1)
            cv2.imwrite(
                str(args.examples / f"r{rounds}-{k}-{names[pasted_classes[k]]}.png"),
                np.concatenate([pasted[k], outline], axis=1)[..., ::-1],
            )
        features, cells = extract_views(
            forward,
            pasted,
            pasted_masks,
            views=int(base["views"]),
            augment=str(base["view_augment"]),
            strength=float(base["augment"]),
            seed=1,
            control=control,
        )
        variants[f"+{rounds} transplant/good"] = HeadData(
            features=torch.cat([plain.features, features], dim=1),
            cells=torch.cat([plain.cells, cells], dim=1),
            classes=torch.cat([plain.classes, torch.from_numpy(pasted_classes)]),
            marked=torch.cat([plain.marked, torch.ones(len(pasted_classes), dtype=torch.bool)]),
            val_features=plain.val_features,
            val_classes=plain.val_classes,
        )
        log(
            f"{len(pasted)} transplants ({dict(collections.Counter(names[c] for c in pasted_classes))}) "
            f"and their views in {time.perf_counter() - started:.0f} s"
        )
    rows: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        for name, data in variants.items():
            network = copy.deepcopy(template)
            started = time.perf_counter()
            report = fit_head(network, data, params=base, control=RunControl(None, None), seed=seed)
            with torch.inference_mode():
                val_logits = network.patch_logits(data.val_features.float())
                temperature = _fit_temperature(val_logits, data.val_classes)
                logits = network.patch_logits(test_features)
            fit_s = time.perf_counter() - started
            defect = 1.0 - PatchClassifierNet.image_probabilities(logits, temperature).numpy()[:, 0]
            threshold = threshold_for_false_reject(defect[~truth], 0.01)
            missed = collections.Counter(test_labels[truth & (defect < threshold)].tolist())
            row: dict[str, Any] = {
                "variant": name,
                "seed": seed,
                "auroc": binary_auroc(truth.astype(int), defect),
                "recall": recall_at_false_reject(defect[~truth], defect[truth], 0.01),
                "missed": dict(sorted(missed.items())),
                "epoch": int(report["best_epoch"]),
                "fit_s": fit_s,
            }
            rows.append(row)
            log(f"  {name}, seed {seed}: AUROC {row['auroc']:.4f}, recall {row['recall']:.4f}, {row['missed']}")
    log("")
    header = f"{'training views':<24} | seed | {'AUROC':>6} | recall @1% FR | {'missed at 1% FR':<34} | epoch | fit s"
    log(header)
    log("-" * len(header))
    for row in rows:
        missed_text = ", ".join(f"{k} {v}" for k, v in row["missed"].items()) or "-"
        log(
            f"{row['variant']:<24} | {row['seed']:>4} | {row['auroc']:>6.4f} | {row['recall']:>13.4f} | "
            f"{missed_text:<34} | {row['epoch']:>5} | {row['fit_s']:>5.0f}"
        )
    log("")
    summary: dict[str, Any] = {}
    for name in variants:
        mine = [r for r in rows if r["variant"] == name]
        key = name.replace(" ", "_").replace("/", "_per_").replace("+", "plus")
        summary[f"{key}_recall_mean"] = round(float(np.mean([r["recall"] for r in mine])), 4)
        summary[f"{key}_auroc_mean"] = round(float(np.mean([r["auroc"] for r in mine])), 4)
    log(json.dumps(summary))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
