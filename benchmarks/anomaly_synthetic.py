"""Goods-only anomaly detection: nearest-neighbour distance against a head taught on
synthetic defects, side by side on the same cached features (DifferNet protocol on MTD).

    .venv/bin/python benchmarks/anomaly_synthetic.py --data ../shared/data/mtd [--seeds 0,1]

Features: the anomaly detector's (Lite0 block 12 at 320 px, per-image standardised,
3x3 neighbourhood; 10 x 10 patches of 192 channels), extracted once by ONNX Runtime.
10 % of the training goods are held out (as the trainer does) to z-score each scorer and
to stop the head's training. Scorers:

- ``knn``: the current detector (random 10k bank of training-good patches, nearest
  distance, Gaussian smoothing, mean over the image);
- ``head``: the classifier's patch head (``PatchClassifierNet``, good vs anomaly), trained
  on the training goods (four flips) against ``workers.ml.synthetic`` defects painted on
  them (``--synthetic-views`` per good); image score = max patch ``P(anomaly)``;
- ``knn+head``: the sum of both scores, each z-scored on the held-out goods.

One table (image AUROC and recall at 1 % false reject on the 98 good / 198 defect test
images, per defect class), then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workers.ml.hyperparameters import DEFAULT_HYPERPARAMETERS  # noqa: E402
from workers.ml.imaging import read_image, resize  # noqa: E402
from workers.ml.metrics import binary_auroc, recall_at_false_reject  # noqa: E402
from workers.ml.networks import PatchClassifierNet, _gaussian_kernel  # noqa: E402
from workers.ml.synthetic import FAMILIES, synthesize_defect  # noqa: E402
from workers.ml.trainers.common import forward_only  # noqa: E402
from workers.ml.trainers.patch_classifier import HeadData, _Features, _flip, fit_head  # noqa: E402
from workers.ml.training import RunControl  # noqa: E402
from workers.ml.types import Progress  # noqa: E402

SIZE = (320, 320)


def _progress(progress: Progress) -> None:
    if progress.metric_name == "val_accuracy" and progress.epoch % 10 == 0:
        print(f"  head epoch {progress.epoch}/{progress.epochs}: loss {progress.loss:.4f}", flush=True)


def load(paths: Sequence[Path]) -> np.ndarray:
    return np.stack([resize(read_image(p), SIZE) for p in paths])


def knn_scores(bank: torch.Tensor, features: torch.Tensor) -> np.ndarray:
    """Mean of the smoothed nearest-bank distances per image (the detector's default)."""
    kernel = _gaussian_kernel(1.0)
    pad = kernel.shape[-1] // 2
    bank_sq = (bank * bank).sum(1)
    out = []
    for start in range(0, len(features), 32):
        chunk = features[start : start + 32].float()
        n, c, h, w = chunk.shape
        q = chunk.permute(0, 2, 3, 1).reshape(-1, c)
        d2 = (q * q).sum(1, keepdim=True) - 2 * q @ bank.t() + bank_sq[None]
        d = d2.min(1).values.clamp_min(0).sqrt().view(n, 1, h, w)
        d = F.conv2d(F.pad(d, (pad,) * 4, mode="replicate"), kernel)
        out.append(d.flatten(1).mean(1))
    return torch.cat(out).numpy()


def head_scores(network: PatchClassifierNet, features: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        logits = network.patch_logits(features.float())
        return (1.0 - PatchClassifierNet.image_probabilities(logits)[:, 0]).numpy()


def synthetic_views(
    images: np.ndarray, views: int, rng: np.random.Generator, families: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    out_images, out_masks = [], []
    for view in range(views):
        for image in images:
            donor = images[int(rng.integers(0, len(images)))]
            painted, mask = synthesize_defect(image, rng, [donor], families)
            out_images.append(_flip(view, painted[None])[0])
            out_masks.append(_flip(view, mask[None])[0])
    return np.stack(out_images), np.stack(out_masks)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--synthetic-views", type=int, default=4)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "anomaly-synthetic.txt")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    lines: list[str] = []

    def log(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    listed = {line.strip() for line in (args.data / "differnet_train_good.txt").read_text().split() if line.strip()}
    train_paths, test_paths, test_labels = [], [], []
    for folder in sorted(args.data.glob("MT_*")):
        label = folder.name.removeprefix("MT_")
        for path in sorted((folder / "Imgs").glob("*.jpg")):
            if label == "Free" and (path.name in listed or path.stem in listed):
                train_paths.append(path)
            else:
                test_paths.append(path)
                test_labels.append(label)
    log(f"train goods {len(train_paths)}, test {len(test_paths)} ({sum(x != 'Free' for x in test_labels)} defects)")
    started = time.perf_counter()
    train_images, test_images = load(train_paths), load(test_paths)
    truth = np.array([label != "Free" for label in test_labels], dtype=int)
    params = dict(DEFAULT_HYPERPARAMETERS["classifier"])
    params["unmarked_weight"] = 0.0
    network = PatchClassifierNet(2, taps=[12], neighbourhood=3, hidden=128, pretrained=True, standardize=True).eval()
    forward = forward_only(_Features(network), SIZE, torch.device("cpu"))

    def features_of(images: np.ndarray) -> torch.Tensor:
        return torch.cat([forward(images[s : s + 16]).half() for s in range(0, len(images), 16)])

    test_features = features_of(test_images)
    log(f"images and test features: {time.perf_counter() - started:.0f} s")
    families = [f for f in args.families.split(",") if f]
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(train_images))
        n_val = round(0.1 * len(train_images))
        fit, val = train_images[np.sort(order[n_val:])], train_images[np.sort(order[:n_val])]
        t0 = time.perf_counter()
        clean = torch.stack([features_of(_flip(v, fit)) for v in range(4)])  # (4, N, C, h, w)
        val_clean = features_of(val)
        syn_images, syn_masks = synthetic_views(fit, args.synthetic_views, rng, families)
        syn_features = features_of(syn_images)
        val_syn_images, _ = synthetic_views(val, 1, rng, families)
        val_syn = features_of(val_syn_images)
        feature_s = time.perf_counter() - t0
        h, w = clean.shape[-2:]
        syn_cells = F.adaptive_max_pool2d(torch.from_numpy(syn_masks.astype(np.float32))[:, None], (h, w))[:, 0] > 0
        # Views of the head's data: every item is (view, image); synthetic images are
        # their own "images" in view 0 padded with the clean views of goods.
        n_fit = len(fit)
        n_syn = len(syn_features)
        total = n_fit * 4 + n_syn
        features = torch.cat([clean.reshape(-1, *clean.shape[2:]), syn_features])[None]
        cells = torch.cat([torch.zeros(n_fit * 4, h, w, dtype=torch.bool), syn_cells])[None]
        classes = torch.cat([torch.zeros(n_fit * 4, dtype=torch.long), torch.ones(n_syn, dtype=torch.long)])
        data = HeadData(
            features=features,
            cells=cells,
            classes=classes,
            marked=torch.ones(total, dtype=torch.bool),
            val_features=torch.cat([val_clean, val_syn]),
            val_classes=torch.cat([torch.zeros(len(val_clean)), torch.ones(len(val_syn))]).long(),
        )
        head_net = PatchClassifierNet(2, taps=[12], neighbourhood=3, hidden=128, pretrained=False).eval()
        t0 = time.perf_counter()
        fitted = fit_head(head_net, data, params=params, control=RunControl(_progress, None), seed=seed)
        fit_s = time.perf_counter() - t0
        flat = clean[0].permute(0, 2, 3, 1).reshape(-1, clean.shape[2]).float()
        generator = torch.Generator().manual_seed(seed)
        bank = flat[torch.randperm(len(flat), generator=generator)[:10_000]]
        scores = {
            "knn": (knn_scores(bank, val_clean), knn_scores(bank, test_features)),
            "head": (head_scores(head_net, val_clean), head_scores(head_net, test_features)),
        }
        z = {}
        for name, (val_s, test_s) in scores.items():
            z[name] = (test_s - val_s.mean()) / (val_s.std() + 1e-9)
        scores_test = {name: test for name, (_, test) in scores.items()}
        scores_test["knn+head"] = z["knn"] + z["head"]
        scores_test["max(knn,head)"] = np.maximum(z["knn"], z["head"])
        for name, s in scores_test.items():
            per_class = {}
            goods = s[truth == 0]
            for label in sorted(set(test_labels) - {"Free"}):
                chosen = np.array([x == label for x in test_labels])
                per_class[label] = recall_at_false_reject(goods, s[chosen], 0.01)
            row = {
                "seed": seed,
                "scorer": name,
                "auroc": binary_auroc(truth, s),
                "recall": recall_at_false_reject(goods, s[truth == 1], 0.01),
                "per_class": per_class,
                "epoch": fitted["best_epoch"],
                "features_s": feature_s,
                "fit_s": fit_s,
            }
            rows.append(row)
            classes_text = " ".join(f"{k[:4]} {v:.2f}" for k, v in per_class.items())
            log(
                f"seed {seed} | {name:14s} | AUROC {row['auroc']:.4f} | recall@1%FR {row['recall']:.3f} | "
                f"{classes_text} | head epoch {fitted['best_epoch']} | views {feature_s:.0f} s | fit {fit_s:.0f} s"
            )
    summary = {}
    for name in ("knn", "head", "knn+head", "max(knn,head)"):
        chosen_rows = [r for r in rows if r["scorer"] == name]
        summary[f"{name}_auroc_mean"] = round(float(np.mean([r["auroc"] for r in chosen_rows])), 4)
        summary[f"{name}_recall_mean"] = round(float(np.mean([r["recall"] for r in chosen_rows])), 4)
    log(json.dumps(summary))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
