"""Anomaly trainer: a normalising flow or a PatchCore-style memory bank of good-part patch
features, and a bank of defect patch features where labelled defects are marked (with a
flow, the two scorers' evidence is summed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from workers.ml.errors import TrainingDataError
from workers.ml.metrics import binary_auroc, threshold_for_false_reject
from workers.ml.networks import PatchCoreNet, PatchFlow
from workers.ml.sufficiency import anomaly_data_warnings
from workers.ml.trainers.common import TrainedModel, load_images, load_masks, to_tensor, training_device
from workers.ml.training import RunControl, is_good
from workers.ml.types import Progress, Sample


def greedy_coreset(features: torch.Tensor, size: int, *, projection: int, seed: int) -> torch.Tensor:
    """Indices of ``size`` rows chosen by greedy k-centre (PatchCore coreset selection).

    Distances are computed in a random ``projection``-dimensional space (Johnson-
    Lindenstrauss), which keeps the choice nearly the same at a fraction of the cost:
    O(size * rows * projection).
    """
    if size >= len(features):
        return torch.arange(len(features))
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(features.shape[1], projection, generator=generator) / math.sqrt(projection)
    projected = features @ matrix
    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = int(torch.randint(len(features), (1,), generator=generator))
    nearest = ((projected - projected[chosen[0]]) ** 2).sum(dim=1)
    for index in range(1, size):
        chosen[index] = int(nearest.argmax())
        nearest = torch.minimum(nearest, ((projected - projected[chosen[index]]) ** 2).sum(dim=1))
    return chosen


def fit_projection(
    features: torch.Tensor, dims: int, *, generator: torch.Generator, max_rows: int = 50_000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centring mean (C,) and first ``dims`` principal components (C, dims) of good patch
    features (N, C), fitted on at most ``max_rows`` of them (an SVD of 50k x 192: ~1 s)."""
    if not 0 < dims <= features.shape[1]:
        raise ValueError(f"projection_dims must be 1..{features.shape[1]}, not {dims}")
    sample = features
    if len(features) > max_rows:
        sample = features[torch.randperm(len(features), generator=generator)[:max_rows]]
    mean = sample.mean(dim=0)
    _, _, right = torch.linalg.svd(sample - mean, full_matrices=False)
    return mean.contiguous(), right[:dims].t().contiguous()


FLOW_BATCH = 512


def fit_flow(
    features: torch.Tensor, *, grid: Sequence[int], params: dict[str, Any], control: RunControl, seed: int
) -> tuple[PatchFlow, float]:
    """Fit a ``PatchFlow`` to good patch features (M, C), row r at grid cell r % (h * w), by
    maximum likelihood: AdamW, one-cycle schedule, ``flow_epochs`` passes over the patches in
    batches of 512 (bounded by ``flow_min_steps`` and ``flow_max_steps``). Its ``offset`` is
    then the lowest per-channel NLL of a training patch. Returns it and its last mean loss."""
    cells = int(grid[0]) * int(grid[1])
    flow = PatchFlow(
        channels=features.shape[1], grid=grid, blocks=int(params["flow_blocks"]), hidden=int(params["flow_hidden"])
    )
    flow.feature_mean.copy_(features.mean(dim=0))
    flow.feature_std.copy_(features.std(dim=0) + 1e-4)
    data = flow.standardise(features)
    cell_of = torch.arange(len(features)) % cells
    batch = min(FLOW_BATCH, len(data))
    per_pass = math.ceil(len(data) / batch)
    steps = max(int(params["flow_epochs"]) * per_pass, int(params["flow_min_steps"]))
    steps = min(steps, int(params["flow_max_steps"]))
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimiser = torch.optim.AdamW(flow.parameters(), lr=1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=1e-3, total_steps=steps)
    flow.train()
    recent: list[float] = []
    for step in range(steps):
        chosen = torch.randint(len(data), (batch,), generator=generator)
        loss = flow.negative_log_likelihood(data[chosen], flow.positions[cell_of[chosen]]).mean()
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]  # torch stubs leave backward untyped
        optimiser.step()
        schedule.step()
        recent = [*recent[-49:], float(loss.detach())]
        if (step + 1) % 100 == 0 or step + 1 == steps:
            control.check()
            control.report(Progress(step + 1, steps, float(np.mean(recent)), None, "flow_steps"))
    flow.eval()
    with torch.inference_mode():
        nll = torch.cat(
            [
                flow.negative_log_likelihood(data[start : start + 8192], flow.positions[cell_of[start : start + 8192]])
                for start in range(0, len(data), 8192)
            ]
        )
    flow.offset.fill_(float(nll.min()))
    return flow, float(np.mean(recent))


def train_anomaly(
    *, samples: Sequence[Sample], good_class: str, params: dict[str, Any], control: RunControl, seed: int
) -> TrainedModel:
    """Fit a PatchCore memory bank on good samples, plus a defect bank where labelled
    defects mark where their defect is.

    A ``val_fraction`` of the goods is held out: their scores set the image threshold
    (``target_false_reject``) and the heatmap scale. Defects with a mask or polygons (at
    most ``defect_bank_size`` patch features from their marked regions, ``val_fraction`` of
    them held out) form the defect bank; with none, the model learns from goods only (the
    cold start). Held-out and unmarked defects add a validation AUROC to the metrics.

    The goods are scored by a flow (``scorer`` "flow") or a nearest-neighbour bank ("knn").
    A defect bank is searched beside a good bank; with the flow scorer and
    ``flow_with_defect_bank`` the flow is fitted too and the network sums both scorers'
    evidence, each weighted by its spread on the held-out goods. A model with a defect bank
    sees parts at ``input_size_with_defect_bank``, a goods-only one at ``input_size``.
    """
    goods = [s for s in samples if is_good(s, good_class)]
    defects = [s for s in samples if not is_good(s, good_class)]
    if len(goods) < 2:
        raise TrainingDataError("an anomaly model needs at least two good samples")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(goods))
    n_val = min(max(1, round(len(goods) * float(params["val_fraction"]))), len(goods) - 1)
    fit_goods = [goods[i] for i in sorted(order[n_val:])]
    val_goods = [goods[i] for i in sorted(order[:n_val])]
    marked = [s for s in defects if s.mask_path is not None or s.polygons]
    bank_defects: list[Sample] = []
    if int(params["defect_bank_size"]) > 0 and marked:
        defect_order = rng.permutation(len(marked))
        n_val_defects = round(len(marked) * float(params["val_fraction"])) if len(marked) >= 5 else 0
        bank_defects = [marked[i] for i in sorted(defect_order[n_val_defects:])]
        held_out = {marked[i].image_path for i in defect_order[:n_val_defects]}
        in_bank = {s.image_path for s in bank_defects}
        defects = [s for s in defects if s.image_path in held_out or s.image_path not in in_bank]
    size_key = "input_size_with_defect_bank" if bank_defects else "input_size"
    size = (int(params[size_key][0]), int(params[size_key][1]))
    architecture: dict[str, Any] = {
        "backbone": "efficientnet-lite0",
        "method": "patchcore+defect-bank" if bank_defects else "patchcore",
        "taps": [int(t) for t in params["taps"]],
        "neighbourhood": int(params["neighbourhood"]),
        "blur_sigma": float(params["blur_sigma"]),
        "standardize": bool(params["standardize"]),
        "aggregation": str(params["defect_aggregation"] if bank_defects else params["aggregation"]),
    }
    use_flow = params["scorer"] == "flow" and (not bank_defects or bool(params["flow_with_defect_bank"]))
    fused = use_flow and bool(bank_defects)  # both scorers, their evidence summed
    network = PatchCoreNet(
        taps=architecture["taps"],
        neighbourhood=architecture["neighbourhood"],
        bank_size=1,
        blur_sigma=architecture["blur_sigma"],
        pretrained=bool(params["pretrained"]),
        standardize=architecture["standardize"],
        aggregation=architecture["aggregation"],
    ).eval()

    # Feature extraction (the costly part) runs on the training device; the bank is CPU.
    device = training_device()
    network.to(device)
    chunks: list[torch.Tensor] = []
    defect_chunks: list[torch.Tensor] = []
    chunk_size = 16
    total = math.ceil(len(fit_goods) / chunk_size) + math.ceil(len(bank_defects) / chunk_size)
    done = 0
    for start in range(0, len(fit_goods), chunk_size):
        control.check()
        images = load_images(fit_goods[start : start + chunk_size], size, control)
        with torch.inference_mode():
            patches = network.features(network.standardize(to_tensor(images).to(device, non_blocking=True)))
        chunk_grid = patches.shape[-2:]
        # Row-major per image: row r of the concatenation is grid cell r % (h * w).
        chunks.append(patches.permute(0, 2, 3, 1).reshape(-1, patches.shape[1]).cpu())
        done += 1
        control.report(Progress(done, total, 0.0, None, "feature_chunks"))
    for start in range(0, len(bank_defects), chunk_size):
        control.check()
        chunk = bank_defects[start : start + chunk_size]
        images = load_images(chunk, size, control)
        with torch.inference_mode():
            patches = network.features(network.standardize(to_tensor(images).to(device, non_blocking=True))).cpu()
        # A patch is a defect patch when any pixel of its cell is marked.
        masks = torch.from_numpy(load_masks(chunk, size, good_class).astype(np.float32))[:, None]
        cells = F.adaptive_max_pool2d(masks, patches.shape[-2:])[:, 0] > 0
        defect_chunks.append(patches.permute(0, 2, 3, 1)[cells])
        done += 1
        control.report(Progress(done, total, 0.0, None, "feature_chunks"))
    grid = [int(v) for v in chunk_grid]
    features = torch.cat(chunks)
    del chunks
    network.to("cpu")
    generator = torch.Generator().manual_seed(seed)
    if use_flow:
        flow, flow_loss = fit_flow(features, grid=grid, params=params, control=control, seed=seed)
        architecture.update(method="patch-flow+defect-bank" if fused else "patch-flow", grid=grid)
        architecture.update(flow_blocks=int(params["flow_blocks"]), flow_hidden=int(params["flow_hidden"]))
        if fused:
            architecture.update(fused=True, flow_aggregation=str(params["aggregation"]))
        else:
            features = features[:0]  # no bank to build
    candidates = int(params["coreset_candidates"])
    if len(features) > candidates:
        # Uniform pre-sampling bounds the coreset cost; neighbouring patches of the same
        # image are near-duplicates, so little is lost.
        features = features[torch.randperm(len(features), generator=generator)[:candidates]]
    control.check()
    dims = int(params["projection_dims_with_defect_bank"] if bank_defects else params["projection_dims"])
    dims = 0 if use_flow and not fused else dims
    # As many components as channels (or more) would project nothing away.
    projection = fit_projection(features, dims, generator=generator) if 0 < dims < features.shape[1] else None
    if projection is not None:
        features = (features - projection[0]) @ projection[1]
        defect_chunks = [(chunk - projection[0]) @ projection[1] for chunk in defect_chunks]
        architecture["projection_dims"] = dims
    wanted = int(params["bank_size_with_defect_bank"] if bank_defects else params["bank_size"])
    bank_size = min(wanted, len(features))
    if params["bank_selection"] == "coreset":
        chosen = greedy_coreset(features, bank_size, projection=int(params["coreset_projection"]), seed=seed)
    elif params["bank_selection"] == "random":
        # With mean aggregation the bank must keep the density of typical patches; a
        # k-centre coreset over-represents outliers (MTD: 0.968 vs 0.988 image AUROC,
        # benchmarks/README.md).
        chosen = torch.randperm(len(features), generator=generator)[:bank_size]
    else:
        raise ValueError(f"unknown bank_selection {params['bank_selection']!r}")
    bank = features[chosen].contiguous()
    architecture["bank_size"] = bank_size
    defect_bank = torch.cat(defect_chunks) if defect_chunks else torch.zeros(0, bank.shape[1])
    if len(defect_bank) > int(params["defect_bank_size"]):
        keep = torch.randperm(len(defect_bank), generator=generator)[: int(params["defect_bank_size"])]
        defect_bank = defect_bank[keep.sort().values]
    architecture["defect_bank_size"] = len(defect_bank)
    # The bank size is only known now; PatchCore does not train the extractor, so the
    # final network simply takes over the ImageNet feature weights.
    extractor = network.features
    network = PatchCoreNet(
        taps=architecture["taps"],
        neighbourhood=architecture["neighbourhood"],
        bank_size=bank_size,
        blur_sigma=architecture["blur_sigma"],
        pretrained=False,
        standardize=architecture["standardize"],
        aggregation=architecture["aggregation"],
        defect_bank_size=len(defect_bank),
        projection_dims=int(architecture.get("projection_dims", 0)),
        flow_blocks=int(architecture.get("flow_blocks", 0)),
        flow_hidden=int(architecture.get("flow_hidden", 256)),
        grid=grid,
        fused=fused,
        flow_aggregation=str(architecture.get("flow_aggregation", "mean")),
    )
    network.features.load_state_dict(extractor.state_dict())
    if use_flow:
        assert network.flow is not None
        network.flow.load_state_dict(flow.state_dict())
    if projection is not None:
        network.set_projection(*projection)
    network.set_memory_bank(bank)
    network.set_defect_bank(defect_bank.contiguous())
    network.eval()
    control.check()

    val_images = load_images(val_goods, size, control)
    if fused:
        network.set_fusion_weights(_fusion_weights(network, val_images))
        architecture["fusion_weights"] = [round(float(w), 6) for w in network.fusion_weights]
    val_scores, val_maps = _score(network, val_images)
    threshold = threshold_for_false_reject(val_scores, float(params["target_false_reject"]))
    # Patch level: the largest (blurred) patch distance seen on a held-out good part.
    # It, not the image threshold, draws the mask: with mean aggregation many patches of
    # a good part exceed the image threshold.
    pixel_threshold = float(np.nextafter(np.float32(val_maps.max()), np.float32(np.inf)))
    thresholds = {
        "image_score": threshold,
        "pixel_score": pixel_threshold,
        "heatmap_low": float(np.median(val_maps)),
        "heatmap_high": 1.5 * pixel_threshold,
    }
    metrics: dict[str, Any] = {
        "bank_size": bank_size,
        "fit_images": len(fit_goods),
        "val_goods": len(val_goods),
        "defect_bank_size": len(defect_bank),
        "defect_bank_images": len(bank_defects),
        "projection_dims": int(architecture.get("projection_dims", 0)),
    }
    warnings = anomaly_data_warnings(fit_goods=len(fit_goods))
    if warnings:
        metrics["data_warnings"] = warnings
    if use_flow:
        metrics["flow_final_loss"] = round(flow_loss, 4)
    if defects:
        defect_scores, _ = _score(network, load_images(defects, size, control))
        scores = np.concatenate([val_scores, defect_scores])
        truth = np.concatenate([np.zeros(len(val_scores)), np.ones(len(defect_scores))])
        metrics["val_image_auroc"] = binary_auroc(truth, scores)
        metrics["val_defect_recall"] = float((defect_scores >= threshold).mean())
    return TrainedModel(
        network=network,
        class_names=[good_class, "anomaly"],
        architecture=architecture,
        thresholds=thresholds,
        metrics=metrics,
        output_names=["score", "patch_scores"],
        memory_bank=None if use_flow and not fused else bank.numpy(),
        fitted_size=size,
    )


def _fusion_weights(network: PatchCoreNet, images: np.ndarray) -> torch.Tensor:
    """Inverse standard deviations, on held-out good parts, of a fused network's flow and
    bank image scores and of their patch maps (image flow, image bank, patch flow, patch
    bank); a spread of zero (identical goods) counts as 1e-6."""
    flow_maps, bank_maps = [], []
    with torch.inference_mode():
        for start in range(0, len(images), 8):
            flow_map, bank_map = network.component_maps(to_tensor(images[start : start + 8]))
            flow_maps.append(flow_map)
            bank_maps.append(bank_map)
    flow_all, bank_all = torch.cat(flow_maps), torch.cat(bank_maps)
    spreads = torch.stack(
        [
            network.pool(flow_all, network.flow_aggregation).std(correction=0),
            network.pool(bank_all, network.aggregation).std(correction=0),
            flow_all.std(correction=0),
            bank_all.std(correction=0),
        ]
    )
    return 1.0 / torch.clamp(spreads.double(), min=1e-6).float()


def _score(network: PatchCoreNet, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, maps = [], []
    with torch.inference_mode():
        for start in range(0, len(images), 8):
            image_scores, patch_scores = network(to_tensor(images[start : start + 8]))
            scores.append(image_scores.numpy())
            maps.append(patch_scores.numpy())
    return np.concatenate(scores), np.concatenate(maps)
