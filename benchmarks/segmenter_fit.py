"""Is the segmenter short of data, of steps or of something else? Train IoU against test IoU.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/segmenter_fit.py --data ../shared/data/mtd \\
        --hyperparameters '{"freeze_through_block": 4, "patience": 100}' --keep /tmp/segmenter

Same split as ``mtd.py`` (seed 0, 30 % test). Trains one segmenter (or reuses the one kept
in ``--keep``), then scores, on every other training defect image and on every test defect
image, the mean per-image IoU at the original resolution for pixel thresholds 0.3-0.6 and at
the trained threshold, with and without test-time flips (the mean of the four flips'
probabilities), and counts the images the mask misses entirely (IoU < 0.05). A model whose
training IoU sits near its test IoU is under-fitted, not over-fitted. Prints one table and
one JSON line; writes them to ``--output``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
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

from mtd import GOOD, collect, label_of, load_mask

from workers.ml.imaging import read_image, to_batch
from workers.ml.inference import load_inferencer
from workers.ml.metrics import mask_iou_dice
from workers.ml.training import stratified_split, train
from workers.ml.types import Sample

THRESHOLDS = (0.3, 0.4, 0.5, 0.6)
FLIPS = ((3,), (2,), (2, 3))  # axes of an NCHW batch: horizontal, vertical, both


def probability_map(inferencer: Any, image: np.ndarray, flips: bool) -> np.ndarray:
    """Defect probability at the image's own resolution, optionally averaged over flips."""
    batch = to_batch([image], inferencer.input_size)
    maps = [inferencer.forward_batch(batch)[0][0, 0]]
    if flips:
        for axes in FLIPS:
            flipped = inferencer.forward_batch(np.flip(batch, axis=axes).copy())[0][0]
            maps.append(np.flip(flipped, axis=tuple(a - 1 for a in axes))[0])
    mean = np.mean(maps, axis=0).astype(np.float32)
    resized: np.ndarray = cv2.resize(mean, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    return resized


def score(inferencer: Any, samples: list[Sample], threshold: float, flips: bool) -> dict[str, Any]:
    maps = [probability_map(inferencer, read_image(s.image_path), flips) for s in samples]
    truths = [load_mask(s) > 0 for s in samples]

    def ious(t: float) -> np.ndarray:
        return np.array([mask_iou_dice((m >= t)[None], truth[None])[0] for m, truth in zip(maps, truths, strict=True)])

    at_trained = ious(threshold)
    per_class: dict[str, list[float]] = {}
    for sample, value in zip(samples, at_trained, strict=True):
        per_class.setdefault(label_of(sample), []).append(float(value))
    return {
        "by_threshold": {t: float(ious(t).mean()) for t in THRESHOLDS},
        "iou": float(at_trained.mean()),
        "missed": int((at_trained < 0.05).sum()),
        "images": len(samples),
        "per_class": {k: float(np.mean(v)) for k, v in sorted(per_class.items())},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--hyperparameters", type=json.loads, default={})
    parser.add_argument("--keep", type=Path, required=True, help="artifact folder: trained into, or reused")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "segmenter-fit-latest.txt")
    args = parser.parse_args()
    torch.set_num_threads(2)
    lines: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    samples = collect(args.data)
    labels = [label_of(s) for s in samples]
    train_idx, test_idx = stratified_split(labels, 0.3, 0)
    train_set, test_set = [samples[i] for i in train_idx], [samples[i] for i in test_idx]
    log(
        f"Segmenter fit, MTD {len(samples)} images, {platform.machine()}, {os.cpu_count()} cores, "
        f"hyperparameters {json.dumps(args.hyperparameters)}, {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    artifacts_file = args.keep / "artifacts.json"
    if not artifacts_file.exists():
        started = time.perf_counter()
        result = train(
            kind="segmenter",
            samples=train_set,
            good_class=GOOD,
            out_dir=args.keep,
            hyperparameters=args.hyperparameters,
            progress=lambda u: log(f"  epoch {u.epoch}/{u.epochs} loss {u.loss:.3f} val_iou {u.metric:.3f}"),
            seed=0,
        )
        log(f"trained in {(time.perf_counter() - started) / 60:.1f} min: {result.metrics}")
        artifacts_file.write_text(json.dumps(result.artifacts))
    inferencer = load_inferencer(args.keep, json.loads(artifacts_file.read_text()), backend="onnx")
    manifest = json.loads((args.keep / "manifest.json").read_text())
    threshold = float(manifest["thresholds"]["pixel_probability"])
    subsets = {
        "train (every other defect image)": [s for s in train_set if s.label is not None][::2],
        "test (all defect images)": [s for s in test_set if s.label is not None],
    }
    rows = []
    for name, subset in subsets.items():
        for flips in (False, True):
            rows.append((name, flips, score(inferencer, subset, threshold, flips)))
    log("")
    header = (
        f"{'images':<32} | {'flips':>5} | "
        + " | ".join(f"IoU@{t}" for t in THRESHOLDS)
        + f" | IoU@trained {threshold} | missed | per class at the trained threshold"
    )
    log(header)
    log("-" * len(header))
    for name, flips, row in rows:
        per_class = ", ".join(f"{k} {v:.3f}" for k, v in row["per_class"].items())
        log(
            f"{name:<32} | {'yes' if flips else 'no':>5} | "
            + " | ".join(f"{row['by_threshold'][t]:>7.3f}" for t in THRESHOLDS)
            + f" | {row['iou']:>{len(f'IoU@trained {threshold}')}.3f} | {row['missed']:>2} / {row['images']:<3} | {per_class}"
        )
    log("")
    (train_plain, _), (test_plain, test_flips) = [[r for n, _, r in rows if n == name] for name in subsets]
    log(
        json.dumps(
            {
                "train_iou": round(train_plain["iou"], 4),
                "test_iou": round(test_plain["iou"], 4),
                "test_iou_flips": round(test_flips["iou"], 4),
                "train_missed": train_plain["missed"],
                "test_missed": test_plain["missed"],
            }
        )
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
