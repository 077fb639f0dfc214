"""Studies of the goods-only flow scorer on cached MTD features (not the product path).

Feature extraction is the slow part, so it runs once per input size and is cached; each study
then fits ``workers.ml.trainers.anomaly.fit_flow`` (Loupe's own flow, 8 x 256) on the cached
patches and scores the test images. Three steps, run by hand:

    # Lite0 taps (ImageNet, StandardizeIntensity, 3x3 neighbourhood) at SIZE px -> CACHE/featSIZE.npz
    .venv/bin/python benchmarks/anomaly_flow_study.py extract --data ../shared/data/mtd --size 320 --taps 4,10,12
    # DifferNet split: one flow per tap, each alone and fused (results/anomaly-flow-scales.txt)
    .venv/bin/python benchmarks/anomaly_flow_study.py scales --size 320 --taps 12,10,4 --seed 0
    # mtd.py's classifier split: flow, kNN and the defect bank side by side
    # (results/anomaly-flow-defect-bank.txt)
    .venv/bin/python benchmarks/anomaly_flow_study.py bank --data ../shared/data/mtd --seed 0
    # DifferNet split, the goods fitted on cut to N: flow against kNN by goods count
    # (results/anomaly-goods-count.txt)
    .venv/bin/python benchmarks/anomaly_flow_study.py goods --counts 25,50,100,200,400,0 --seed 0
    # DifferNet split: the flow fitted on the goods as they are, and on the goods plus their
    # flips and 180-degree turn (4x the patches); extract at --size first
    .venv/bin/python benchmarks/anomaly_flow_study.py flips --data ../shared/data/mtd --size 256 --seed 0
    # DifferNet split: one flow per feature set, the channels of several stride-32 taps joined
    # on one grid ('+'), optionally projected onto their first --dims principal components of
    # the training goods; extract those taps first (results/anomaly-flow-joined-taps.txt)
    .venv/bin/python benchmarks/anomaly_flow_study.py joined --size 256 --taps 12,12+14,12+15 --dims 192

Each study prints one row per image score (AUROC, recall at 1 % false reject), then one JSON
line of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workers.ml.imaging import read_image, resize  # noqa: E402
from workers.ml.metrics import binary_auroc, recall_at_false_reject  # noqa: E402
from workers.ml.networks import Lite0Encoder, PatchFlow, StandardizeIntensity  # noqa: E402
from workers.ml.trainers.anomaly import fit_flow  # noqa: E402
from workers.ml.training import RunControl, stratified_split  # noqa: E402
from workers.ml.types import Sample  # noqa: E402

FLOW = {"flow_blocks": 8, "flow_hidden": 256, "flow_epochs": 25, "flow_min_steps": 200, "flow_max_steps": 4000}
CLASSES = ("Free", "Blowhole", "Break", "Crack", "Fray", "Uneven")  # as benchmarks/mtd.py orders them
MASK_GRID = 80  # masks are cached at 80 x 80 for pixel AUROC and defect cells


def collect(root: Path) -> list[Sample]:
    """Every MTD image as a Sample, in ``mtd.py``'s order (its split indices then agree)."""
    samples = []
    for name in CLASSES:
        for image in sorted((root / f"MT_{name}" / "Imgs").glob("*.jpg")):
            mask = image.with_suffix(".png")
            label = None if name == "Free" else name
            samples.append(Sample(image_path=image, label=label, mask_path=mask if label and mask.exists() else None))
    return samples


def label_of(sample: Sample) -> str:
    return sample.label or "Free"


def differnet_split(root: Path) -> tuple[list[Sample], list[Sample]]:
    """(training goods, test images) of the DifferNet protocol, as ``mtd.py`` uses it."""
    listed = {line.strip() for line in (root / "differnet_train_good.txt").read_text().splitlines() if line.strip()}
    samples = collect(root)
    fit = [s for s in samples if s.label is None and s.image_path.name in listed]
    test = [s for s in samples if not (s.label is None and s.image_path.name in listed)]
    return fit, test


def extract(root: Path, size: int, taps: Sequence[int], cache: Path) -> None:
    encoder = Lite0Encoder(pretrained=True, last_block=max(taps)).eval()
    standardize = StandardizeIntensity()
    fit, test = differnet_split(root)
    arrays: dict[str, np.ndarray] = {}
    for split, samples in (("train", fit), ("test", test)):
        maps: dict[int, list[np.ndarray]] = {tap: [] for tap in taps}
        start = time.perf_counter()
        for index in range(0, len(samples), 16):
            chunk = samples[index : index + 16]
            images = np.stack([resize(read_image(s.image_path), (size, size)) for s in chunk])
            with torch.inference_mode():
                outputs = encoder(standardize(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float()), taps)
            for tap, output in zip(taps, outputs, strict=True):
                pooled = F.avg_pool2d(output, 3, stride=1, padding=1, count_include_pad=False)
                maps[tap].append(pooled.half().numpy())
        for tap in taps:
            arrays[f"{split}_tap{tap}"] = np.concatenate(maps[tap])
        arrays[f"{split}_paths"] = np.array([str(s.image_path) for s in samples])
        print(f"{split}: {len(samples)} images in {time.perf_counter() - start:.0f} s", flush=True)
    masks = np.zeros((len(test), MASK_GRID, MASK_GRID), dtype=np.uint8)
    for index, sample in enumerate(test):
        if sample.mask_path is not None:
            marked = (read_image(sample.mask_path)[..., 0] > 127).astype(np.uint8)
            masks[index] = cv2.resize(marked, (MASK_GRID, MASK_GRID), interpolation=cv2.INTER_NEAREST)
    arrays["test_masks"] = masks
    arrays["test_labels"] = np.array([s.label is not None for s in test])
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(cache / f"feat{size}.npz", **arrays)  # type: ignore[arg-type]  # numpy stubs: **kwargs of arrays


def blur(maps: torch.Tensor) -> torch.Tensor:
    """The 3x3 binomial blur of (N, 1, h, w) patch scores (Loupe's blur, sigma ~1 patch)."""
    row = torch.tensor([[0.25, 0.5, 0.25]])
    return F.conv2d(F.pad(maps, (1, 1, 1, 1), mode="replicate"), (row.t() @ row)[None, None])


def fitted_flow(patch_maps: torch.Tensor, seed: int) -> PatchFlow:
    channels, height, width = patch_maps.shape[1:]
    rows = patch_maps.permute(0, 2, 3, 1).reshape(-1, channels)
    start = time.perf_counter()
    flow, loss = fit_flow(rows, grid=[height, width], params=FLOW, control=RunControl(None, None), seed=seed)
    print(f"flow on {tuple(patch_maps.shape)}: {time.perf_counter() - start:.0f} s, loss {loss:.3f}", flush=True)
    return flow


def flow_maps(flow: PatchFlow, patch_maps: torch.Tensor) -> torch.Tensor:
    count, channels, height, width = patch_maps.shape
    with torch.inference_mode():
        scores = [
            flow(chunk.permute(0, 2, 3, 1).reshape(len(chunk), height * width, channels))
            for chunk in torch.split(patch_maps, 32)
        ]
    return torch.cat(scores).view(count, 1, height, width)


class Table:
    def __init__(self, truth: np.ndarray) -> None:
        self.truth = truth.astype(int)
        self.rows: dict[str, tuple[float, float]] = {}

    def add(self, name: str, scores: torch.Tensor | np.ndarray) -> None:
        values = np.asarray(scores, dtype=np.float64)
        goods, defects = values[self.truth == 0], values[self.truth == 1]
        self.rows[name] = (binary_auroc(self.truth, values), recall_at_false_reject(goods, defects, 0.01))
        auroc, recall = self.rows[name]
        print(f"{name:48s} | {auroc:.4f} | {recall:.3f}", flush=True)

    def json(self) -> str:
        return json.dumps(
            {name: {"auroc": round(a, 4), "recall_at_1pct_fr": round(r, 4)} for name, (a, r) in self.rows.items()}
        )


def scales(cache: Path, size: int, taps: Sequence[int], seed: int) -> None:
    data = np.load(cache / f"feat{size}.npz")
    maps = {}
    for tap in taps:
        flow = fitted_flow(torch.from_numpy(data[f"train_tap{tap}"].astype(np.float32)), seed)
        maps[tap] = blur(flow_maps(flow, torch.from_numpy(data[f"test_tap{tap}"].astype(np.float32))))
    table = Table(data["test_labels"])
    print(f"{'image score (DifferNet split, ' + str(size) + ' px)':48s} | AUROC  | recall @1% FR")
    for tap in taps:
        flat = maps[tap].flatten(1)
        table.add(f"block {tap}, mean", flat.mean(1))
        table.add(f"block {tap}, max", flat.max(1).values)
    if len(taps) > 1:
        grid = max((m.shape[-2:] for m in maps.values()), key=lambda shape: shape[0])
        upsampled = [F.interpolate(m, size=grid, mode="bilinear", align_corners=False) for m in maps.values()]
        table.add("all blocks, NLLs summed, mean", torch.sqrt(sum(m**2 for m in upsampled)).flatten(1).mean(1))  # type: ignore[arg-type]
    print(table.json())


def bank(root: Path, cache: Path, seed: int) -> None:
    """Flow, kNN and defect bank on ``mtd.py``'s seed-0 classifier split (320 px, block 12)."""
    data = np.load(cache / "feat320.npz")
    features: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        tapped = data[f"{split}_tap12"]
        for index, path in enumerate(data[f"{split}_paths"]):
            features[str(path)] = tapped[index]
    for index, path in enumerate(data["test_paths"]):
        masks[str(path)] = data["test_masks"][index]
    samples = collect(root)
    train_idx, test_idx = stratified_split([label_of(s) for s in samples], 0.3, 0)
    goods = [samples[i] for i in train_idx if samples[i].label is None]
    defects = [samples[i] for i in train_idx if samples[i].label is not None]
    order = np.random.default_rng(seed).permutation(len(goods))
    held_out = round(0.1 * len(goods))
    val_goods, fit_goods = [goods[i] for i in order[:held_out]], [goods[i] for i in order[held_out:]]
    test = [samples[i] for i in test_idx]

    def stack(chosen: Sequence[Sample]) -> torch.Tensor:
        return torch.from_numpy(np.stack([features[str(s.image_path)] for s in chosen]).astype(np.float32))

    def rows(maps: torch.Tensor) -> torch.Tensor:
        return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])

    fit = stack(fit_goods)
    height, width = fit.shape[-2:]
    good_rows = rows(fit)
    generator = torch.Generator().manual_seed(seed)
    good_bank = good_rows[torch.randperm(len(good_rows), generator=generator)[:40_000]]
    cells = torch.stack(
        [
            F.adaptive_max_pool2d(
                torch.from_numpy(masks[str(s.image_path)][None, None].astype(np.float32)), (height, width)
            )[0, 0]
            > 0
            for s in defects
        ]
    )
    defect_bank = stack(defects).permute(0, 2, 3, 1)[cells]
    print(
        f"fit {len(fit_goods)} goods, {len(val_goods)} held out; defect bank {len(defect_bank)} rows; test {len(test)}"
    )
    flow = fitted_flow(fit, seed)

    def nearest(queries: torch.Tensor, bank_rows: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.cdist(chunk, bank_rows).min(1).values for chunk in torch.split(queries, 4096)])

    def image_scores(chosen: Sequence[Sample]) -> dict[str, torch.Tensor]:
        maps = stack(chosen)
        queries = rows(maps)

        def grid(values: torch.Tensor) -> torch.Tensor:
            return values.reshape(len(chosen), 1, height, width)

        flow_map = flow_maps(flow, maps)
        to_good, to_defect = grid(nearest(queries, good_bank)), grid(nearest(queries, defect_bank))
        discount = torch.sigmoid(to_good - to_defect)
        return {
            "goods only: kNN, mean": blur(to_good).flatten(1).mean(1),
            "goods only: flow, mean": blur(flow_map).flatten(1).mean(1),
            "defect bank, max (Loupe)": blur(to_good * discount).flatten(1).max(1).values,
            "flow * defect-bank discount, mean": blur(flow_map * discount).flatten(1).mean(1),
        }

    val, scored = image_scores(val_goods), image_scores(test)

    def z(name: str) -> np.ndarray:
        reference = val[name].numpy()
        standardised: np.ndarray = (scored[name].numpy() - reference.mean()) / reference.std()
        return standardised

    table = Table(np.array([s.label is not None for s in test]))
    print(f"{'image score (classifier split), seed ' + str(seed):48s} | AUROC  | recall @1% FR")
    for name, values in scored.items():
        table.add(name, values)
    table.add("flow z + defect bank z (held-out goods)", z("goods only: flow, mean") + z("defect bank, max (Loupe)"))
    print(table.json())


def goods(cache: Path, counts: Sequence[int], seed: int) -> None:
    """Goods-only flow against goods-only kNN (Loupe's defaults: 10,000 random bank rows, mean
    of the blurred patch scores) when only ``count`` of the DifferNet training goods are
    there to fit on (0: all of them); block 12 at 320 px, the whole DifferNet test set."""
    data = np.load(cache / "feat320.npz")
    train = torch.from_numpy(data["train_tap12"].astype(np.float32))
    test = torch.from_numpy(data["test_tap12"].astype(np.float32))
    truth = data["test_labels"]
    count_all, channels, height, width = train.shape
    test_rows = test.permute(0, 2, 3, 1).reshape(-1, channels)
    table = Table(truth)
    print(f"{'image score (DifferNet split, 320 px), seed ' + str(seed):48s} | AUROC  | recall @1% FR")
    for count in counts:
        chosen = train[torch.randperm(count_all, generator=torch.Generator().manual_seed(seed))[: count or count_all]]
        rows = chosen.permute(0, 2, 3, 1).reshape(-1, channels)
        bank_rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:10_000]]
        nearest = torch.cat([torch.cdist(chunk, bank_rows).min(1).values for chunk in torch.split(test_rows, 4096)])
        knn = blur(nearest.view(len(test), 1, height, width)).flatten(1).mean(1)
        flow = blur(flow_maps(fitted_flow(chosen, seed), test)).flatten(1).mean(1)
        table.add(f"{len(chosen)} goods: kNN, mean", knn)
        table.add(f"{len(chosen)} goods: flow, mean", flow)
    print(table.json())


def flips(root: Path, cache: Path, size: int, seed: int) -> None:
    """Goods-only flow (block 12 at ``size`` px, mean of the blurred patch scores) fitted on the
    DifferNet training goods as they are, against the same goods with their horizontal and
    vertical flips and 180-degree turn added: does the flow want more goods than MTD has?"""
    data = np.load(cache / f"feat{size}.npz")
    train = torch.from_numpy(data["train_tap12"].astype(np.float32))
    test = torch.from_numpy(data["test_tap12"].astype(np.float32))
    truth = data["test_labels"]
    flipped_path = cache / f"flips{size}.npy"
    if not flipped_path.exists():
        encoder = Lite0Encoder(pretrained=True, last_block=12).eval()
        standardize = StandardizeIntensity()
        fit, _ = differnet_split(root)
        assert [str(s.image_path) for s in fit] == [str(p) for p in data["train_paths"]]
        views: tuple[tuple[slice, slice], ...] = (
            (slice(None), slice(None, None, -1)),  # horizontal flip
            (slice(None, None, -1), slice(None)),  # vertical flip
            (slice(None, None, -1), slice(None, None, -1)),  # turned 180 degrees
        )
        maps: list[np.ndarray] = []
        start = time.perf_counter()
        for view in views:
            for index in range(0, len(fit), 16):
                images = np.stack(
                    [resize(read_image(s.image_path), (size, size))[view] for s in fit[index : index + 16]]
                )
                with torch.inference_mode():
                    (output,) = encoder(
                        standardize(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float()), [12]
                    )
                maps.append(F.avg_pool2d(output, 3, stride=1, padding=1, count_include_pad=False).half().numpy())
        np.save(flipped_path, np.concatenate(maps))
        print(f"flipped goods: {3 * len(fit)} views in {time.perf_counter() - start:.0f} s", flush=True)
    flipped = torch.from_numpy(np.load(flipped_path).astype(np.float32))
    table = Table(truth)
    print(f"{'image score (DifferNet split, ' + str(size) + ' px), seed ' + str(seed):48s} | AUROC  | recall @1% FR")
    for name, goods_maps in (
        ("goods as they are", train),
        ("goods + flips + 180-degree turn", torch.cat([train, flipped])),
    ):
        start = time.perf_counter()
        flow = fitted_flow(goods_maps, seed)
        table.add(f"{name} ({len(goods_maps)} maps)", blur(flow_maps(flow, test)).flatten(1).mean(1))
        print(f"  fit + score {time.perf_counter() - start:.0f} s", flush=True)
    print(table.json())


def aggregations(cache: Path, size: int, seed: int) -> None:
    """One goods-only flow (block 12 at ``size`` px, all DifferNet training goods), its blurred
    patch scores turned into an image score several ways: the mean (Loupe's default), the
    maximum, and the mean of the k highest patches."""
    data = np.load(cache / f"feat{size}.npz")
    train = torch.from_numpy(data["train_tap12"].astype(np.float32))
    test = torch.from_numpy(data["test_tap12"].astype(np.float32))
    table = Table(data["test_labels"])
    maps = blur(flow_maps(fitted_flow(train, seed), test)).flatten(1)
    print(f"{'image score (DifferNet split, ' + str(size) + ' px), seed ' + str(seed):48s} | AUROC  | recall @1% FR")
    table.add("mean of all patches", maps.mean(1))
    table.add("maximum patch", maps.max(1).values)
    for k in (2, 4, 8, 16, 32):
        table.add(f"mean of the {k} highest patches", maps.topk(k, dim=1).values.mean(1))
    print(table.json())


def ensemble(cache: Path, size: int, seeds: Sequence[int]) -> None:
    """Flows fitted with different seeds on the same goods (block 12 at ``size`` px, all
    DifferNet training goods): each alone, then the mean of their image scores over the first
    2, 3, ... of them. The seed moves the flow's initialisation and batches; an ensemble
    averages that fit noise away, at one flow's cost (~4 ms at 256 px here) per member."""
    data = np.load(cache / f"feat{size}.npz")
    train = torch.from_numpy(data["train_tap12"].astype(np.float32))
    test = torch.from_numpy(data["test_tap12"].astype(np.float32))
    table = Table(data["test_labels"])
    print(f"{'image score (DifferNet split, ' + str(size) + ' px)':48s} | AUROC  | recall @1% FR")
    members = []
    for seed in seeds:
        members.append(blur(flow_maps(fitted_flow(train, seed), test)).flatten(1).mean(1))
        table.add(f"flow, seed {seed}", members[-1])
        if len(members) > 1:
            table.add(
                f"mean of {len(members)} flows (seeds {', '.join(map(str, seeds[: len(members)]))})",
                torch.stack(members).mean(0),
            )
    print(table.json())


def joined(cache: Path, size: int, combos: Sequence[Sequence[int]], dims: int, seed: int) -> None:
    """One flow per combo of taps (their channels joined on one grid), each scored by the
    mean of its blurred patch scores; with ``dims``, combos wider than that are projected
    onto the first ``dims`` principal components of the training goods' patches (centred)."""
    data = np.load(cache / f"feat{size}.npz")
    table = Table(data["test_labels"])
    for combo in combos:
        train = torch.cat([torch.from_numpy(data[f"train_tap{t}"].astype(np.float32)) for t in combo], dim=1)
        test = torch.cat([torch.from_numpy(data[f"test_tap{t}"].astype(np.float32)) for t in combo], dim=1)
        name = "+".join(map(str, combo))
        if dims and train.shape[1] > dims:
            rows = train.permute(0, 2, 3, 1).reshape(-1, train.shape[1])
            mean = rows.mean(0)
            _, _, vh = torch.linalg.svd(rows - mean, full_matrices=False)
            basis = vh[:dims].t()

            def project(maps: torch.Tensor, basis: torch.Tensor = basis, mean: torch.Tensor = mean) -> torch.Tensor:
                flat = maps.permute(0, 2, 3, 1) - mean
                return (flat @ basis).permute(0, 3, 1, 2).contiguous()

            train, test = project(train), project(test)
            name += f" -> {dims} PCs"
        start = time.perf_counter()
        maps = blur(flow_maps(fitted_flow(train, seed), test)).flatten(1)
        table.add(f"blocks {name} ({train.shape[1]} ch), {time.perf_counter() - start:.0f} s", maps.mean(1))
    print(table.json())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "step", choices=["extract", "scales", "bank", "goods", "flips", "aggregations", "joined", "ensemble"]
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mtd")
    parser.add_argument("--cache", type=Path, default=REPO / "var" / "flow-study")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--taps", default="12")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default="0,1,2", help="ensemble: the members' seeds")
    parser.add_argument("--counts", default="25,50,100,200,400,0", help="goods counts of the goods study (0: all)")
    parser.add_argument("--dims", type=int, default=0, help="joined: project wider feature sets to this many PCs")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.step == "joined":
        combos = [[int(tap) for tap in combo.split("+")] for combo in args.taps.split(",")]
        joined(args.cache, args.size, combos, args.dims, args.seed)
        return 0
    taps = [int(tap) for tap in args.taps.split(",")]
    if args.step == "extract":
        extract(args.data, args.size, taps, args.cache)
    elif args.step == "scales":
        scales(args.cache, args.size, taps, args.seed)
    elif args.step == "aggregations":
        aggregations(args.cache, args.size, args.seed)
    elif args.step == "flips":
        flips(args.data, args.cache, args.size, args.seed)
    elif args.step == "ensemble":
        ensemble(args.cache, args.size, [int(seed) for seed in args.seeds.split(",")])
    elif args.step == "goods":
        goods(args.cache, [int(count) for count in args.counts.split(",")], args.seed)
    else:
        bank(args.data, args.cache, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
