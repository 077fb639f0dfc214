"""Where the patch-head classifier fails at 1 % false reject: a picture.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/patch_head_misses.py --data ../shared/data/mtd

Same split, views and default head as the classifier rows of ``mtd.py`` (seed 0). Draws the
three test goods with the highest P(defect) (the third sets the 1 % false-reject threshold
on 258 goods) and every test defect under that threshold, each as the tile, its label mask
(defects) and the head's per-patch P(defect) map, into ``--output`` (PNG); prints the
threshold and the drawn parts.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mtd import GOOD, collect, label_of

from workers.ml.hyperparameters import DEFAULT_HYPERPARAMETERS
from workers.ml.imaging import read_image
from workers.ml.metrics import threshold_for_false_reject
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

SIZE = (320, 320)
ROW_HEIGHT = 150


def panel(image: np.ndarray, mask: np.ndarray | None, patch_map: np.ndarray, caption: str) -> np.ndarray:
    """Tile | mask | heat map side by side at ROW_HEIGHT, with a caption bar above."""
    height, width = image.shape[:2]
    heat = cv2.resize((patch_map * 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    parts = [image]
    if mask is not None:
        parts.append(np.repeat(mask[..., None], 3, axis=2))
    parts.append(cv2.applyColorMap(heat, cv2.COLORMAP_JET)[..., ::-1])
    row = np.concatenate(parts, axis=1)
    row = cv2.resize(row, (max(1, round(row.shape[1] * ROW_HEIGHT / height)), ROW_HEIGHT))
    bar = np.full((22, row.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, row], axis=0)


def montage(rows: list[list[np.ndarray]], max_width: int = 1400) -> np.ndarray:
    gap = 8
    width = max(sum(p.shape[1] + gap for p in row) for row in rows)
    lines = []
    for row in rows:
        pieces = [np.pad(p, ((0, 0), (0, gap), (0, 0)), constant_values=255) for p in row]
        line = np.concatenate(pieces, axis=1)
        lines.append(np.pad(line, ((0, gap), (0, width - line.shape[1]), (0, 0)), constant_values=255))
    image = np.concatenate(lines, axis=0)
    scale = min(1.0, max_width / image.shape[1])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0, help="head seed")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "patch-head-misses.png")
    args = parser.parse_args()
    torch.set_num_threads(2)
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
    params = dict(DEFAULT_HYPERPARAMETERS["classifier"])
    control = RunControl(None, None)
    images = load_images(train_set, SIZE, control)
    test_images = load_images(test_set, SIZE, control)
    masks, marked = load_optional_masks(train_set, SIZE, GOOD)
    torch.manual_seed(0)
    network = PatchClassifierNet(len(names), taps=[12], neighbourhood=3, hidden=128, pretrained=True).eval()
    forward = forward_only(_Features(network), SIZE, torch.device("cpu"))
    blank = np.zeros(test_images.shape[:3], np.uint8)
    test_features = extract_views(
        forward, test_images, blank, views=1, augment="flips", strength=0.0, seed=0, control=control
    )[0][0].float()
    data = prepare_head_data(
        network, images, masks, marked, targets, fit_idx, val_idx, params=params, control=control, seed=0
    )
    fit_head(network, data, params=params, control=control, seed=args.seed)
    with torch.inference_mode():
        temperature = _fit_temperature(network.patch_logits(data.val_features.float()), data.val_classes)
        logits = network.patch_logits(test_features)
    defect = 1.0 - PatchClassifierNet.image_probabilities(logits, temperature).numpy()[:, 0]
    patch_maps = 1.0 - torch.softmax(logits / temperature, dim=1)[:, 0].numpy()
    threshold = threshold_for_false_reject(defect[~truth], 0.01)
    print(f"threshold for 1 % false reject on {int((~truth).sum())} test goods: {threshold:.3f}")
    goods = [i for i in np.argsort(-defect) if not truth[i]][:3]
    missed = [int(i) for i in np.flatnonzero(truth) if defect[i] < threshold]
    top_row = []
    for rank, index in enumerate(goods, start=1):
        sample = test_set[index]
        print(f"good rank {rank}: {sample.image_path.name} P(defect) {defect[index]:.3f}")
        caption = f"good, P(defect) {defect[index]:.3f} (rank {rank} of {int((~truth).sum())} goods)"
        top_row.append(panel(read_image(sample.image_path), None, patch_maps[index], caption))
    missed_panels = []
    for index in missed:
        sample = test_set[index]
        image = read_image(sample.image_path)
        mask = read_image(sample.mask_path)[..., 0] if sample.mask_path else np.zeros(image.shape[:2], np.uint8)
        share = float((mask > 127).mean())
        print(
            f"missed {test_labels[index]}: {sample.image_path.name} P(defect) {defect[index]:.3f}, marked {share:.1%}"
        )
        caption = f"missed {test_labels[index]}, P {defect[index]:.3f}"
        missed_panels.append(panel(image, mask, patch_maps[index], caption))
    rows = [top_row] + [missed_panels[k : k + 3] for k in range(0, len(missed_panels), 3)]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), montage(rows)[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
