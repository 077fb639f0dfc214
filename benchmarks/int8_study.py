"""What INT8 costs the patch-head classifier, and which quantisation settings cost least.

    .venv/bin/python benchmarks/int8_study.py --data ../shared/data/mtd

Trains the default classifier once on mtd.py's stratified split (seed 0), then quantises its
fp32 ONNX export several ways with ``workers.ml.export.quantize_int8`` (static QDQ,
per-channel weights) and scores each copy side by side on the same test parts: defect
recall at 1 % false reject (the issue allows INT8 one point), AUROC, accuracy at the trained
threshold, agreement with fp32, and ms per image at batch 1 and 16 (ONNX Runtime, 2 threads,
no spinning, as served). Variants: activation-range method (min-max, percentile, entropy),
number of calibration images (16 as the trainer uses, or 64), depthwise convolutions left in
float. One table, then one JSON line.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from classifier_timing import ms_per_image
from mtd import GOOD, collect, label_of

from workers.ml.export import quantize_int8
from workers.ml.imaging import read_image, to_batch
from workers.ml.inference import OnnxInferencer, load_inferencer
from workers.ml.metrics import binary_auroc, recall_at_false_reject
from workers.ml.training import stratified_split, train

# (name, method, calibration images, depthwise convolutions in float)
VARIANTS: list[tuple[str, str, int, bool]] = [
    ("minmax, 16 images (default)", "minmax", 16, False),
    ("minmax, 64 images", "minmax", 64, False),
    ("percentile, 64 images", "percentile", 64, False),
    ("entropy, 64 images", "entropy", 64, False),
    ("percentile, 16 images", "percentile", 16, False),
    ("minmax, 64, depthwise float", "minmax", 64, True),
]


def session(path: Path) -> ort.InferenceSession:
    """The session options ``OnnxInferencer`` serves with (2 threads, no spinning)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def score(sess: ort.InferenceSession, batch: np.ndarray) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: batch[i : i + 16]})[0] for i in range(0, len(batch), 16)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--draws", type=int, default=3, help="calibration draws per variant")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "int8-study-latest.txt")
    args = parser.parse_args(argv)
    lines: list[str] = []

    def log(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    samples = collect(args.data)
    labels = [label_of(s) for s in samples]
    train_idx, test_idx = stratified_split(labels, args.test_fraction, args.seed)
    train_set = [samples[i] for i in train_idx]
    test_set = [samples[i] for i in test_idx]
    log(
        f"INT8 study, MTD seed {args.seed}: train {len(train_set)}, test {len(test_set)}; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, onnxruntime {ort.__version__}, "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC"
    )
    with tempfile.TemporaryDirectory(prefix="int8-study-") as scratch:
        work = Path(scratch)
        start = time.perf_counter()
        result = train(kind="classifier", samples=train_set, good_class=GOOD, out_dir=work / "m", seed=args.seed)
        log(f"classifier trained in {(time.perf_counter() - start) / 60:.1f} min")
        fp32 = load_inferencer(work / "m", result.artifacts)
        assert isinstance(fp32, OnnxInferencer)
        class_names = fp32.class_names
        threshold = float(fp32.manifest["thresholds"]["defect_probability"])
        targets = np.array([class_names.index(label_of(s)) for s in test_set])
        good = targets == 0
        test_batch = to_batch([read_image(s.image_path) for s in test_set], fp32.input_size)
        # Calibration images are drawn from the training part; ``--draws`` draws per variant
        # show how much the draw alone moves the result.
        pool = to_batch([read_image(s.image_path) for s in train_set], fp32.input_size)

        def row(name: str, model: Path, quantize_seconds: float) -> dict[str, Any]:
            sess = session(model)
            probabilities = score(sess, test_batch)
            defect = 1.0 - probabilities[:, 0].astype(np.float64)
            predicted_defect = defect >= threshold
            return {
                "variant": name,
                "recall_at_1pct_fr": recall_at_false_reject(defect[good], defect[~good], 0.01),
                "auroc": binary_auroc((~good).astype(np.int64), defect),
                "accuracy": float(np.mean(predicted_defect == ~good)),
                "probabilities": probabilities,
                "ms_b1": ms_per_image(lambda b: sess.run(None, {sess.get_inputs()[0].name: b}), test_batch[:1], 30),
                "ms_b16": ms_per_image(lambda b: sess.run(None, {sess.get_inputs()[0].name: b}), test_batch[:16], 8),
                "quantize_s": quantize_seconds,
            }

        fp32_path = work / "m" / "model.onnx"
        rows = [row("fp32", fp32_path, 0.0)]
        for draw in range(args.draws):
            order = np.random.default_rng(args.seed + draw).permutation(len(pool))
            for name, method, count, float_depthwise in VARIANTS:
                target = work / "int8.onnx"
                batches = [pool[order[i : i + 4]] for i in range(0, count, 4)]
                start = time.perf_counter()
                quantize_int8(
                    fp32_path,
                    target,
                    batches,
                    float_modules=["/head/"],
                    method=method,  # type: ignore[arg-type]
                    float_depthwise=float_depthwise,
                )
                rows.append({**row(name, target, time.perf_counter() - start), "draw": draw})
                log(f"  draw {draw}, {name}: quantised in {rows[-1]['quantize_s']:.0f} s")

    log()
    reference = rows[0]["probabilities"].argmax(axis=1)
    header = f"{'variant':>32} | draw | recall@1%FR | AUROC  | accuracy | agree fp32 | ms b1 | ms b16 | quantise s"
    log(header)
    log("-" * len(header))
    for r in rows:
        r["agree"] = float(np.mean(r["probabilities"].argmax(axis=1) == reference))
        log(
            f"{r['variant']:>32} | {r.get('draw', '-'):>4} | {r['recall_at_1pct_fr']:11.4f} | {r['auroc']:.4f} | "
            f"{r['accuracy']:8.4f} | {r['agree']:10.4f} | {r['ms_b1']:5.2f} | {r['ms_b16']:6.2f} | "
            f"{r['quantize_s']:10.0f}"
        )
    log()
    log(f"{'variant, over draws':>32} | recall mean (min) | AUROC mean | ms b16 median")
    summary: dict[str, dict[str, float]] = {}
    for name, *_ in VARIANTS:
        mine = [r for r in rows[1:] if r["variant"] == name]
        recalls = [r["recall_at_1pct_fr"] for r in mine]
        summary[name] = {
            "recall": float(np.mean(recalls)),
            "recall_min": float(np.min(recalls)),
            "auroc": float(np.mean([r["auroc"] for r in mine])),
            "ms_b16": float(np.median([r["ms_b16"] for r in mine])),
        }
        v = summary[name]
        log(f"{name:>32} | {v['recall']:.4f} ({v['recall_min']:.4f})  | {v['auroc']:.4f}     | {v['ms_b16']:.2f}")
    best = max(summary, key=lambda name: (summary[name]["recall"], summary[name]["auroc"]))
    default = VARIANTS[0][0]
    headline = {
        "fp32_recall": round(rows[0]["recall_at_1pct_fr"], 4),
        "default_int8_recall_mean": round(summary[default]["recall"], 4),
        "best_variant": best,
        "best_int8_recall_mean": round(summary[best]["recall"], 4),
        "best_int8_recall_min": round(summary[best]["recall_min"], 4),
        "best_int8_ms_b16": round(summary[best]["ms_b16"], 2),
        "fp32_ms_b16": round(rows[0]["ms_b16"], 2),
        "draws": args.draws,
    }
    log()
    log(json.dumps(headline))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
