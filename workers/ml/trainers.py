"""Learning code of the three kinds; ``workers.ml.training.train`` is the public entry.

Each ``train_*`` returns a ``TrainedModel``: the fitted network plus what the
manifest needs (class names, thresholds, metrics). Images are decoded once and kept
in memory at the network's input size (uint8), which is what makes several epochs
over ~1000 images affordable on 2 CPU cores.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workers.ml.augment import build_augmentation
from workers.ml.errors import TrainingDataError
from workers.ml.export import export_onnx, quantize_int8
from workers.ml.imaging import read_image, read_mask, resize
from workers.ml.metrics import (
    binary_auroc,
    classification_report,
    fit_temperature,
    mask_iou_dice,
    threshold_for_false_reject,
)
from workers.ml.networks import ClassifierNet, PatchCoreNet, SegmenterNet
from workers.ml.training import (
    MEMORY_BANK_NAME,
    ONNX_INT8_NAME,
    ONNX_NAME,
    WEIGHTS_NAME,
    RunControl,
    is_good,
    stratified_split,
)
from workers.ml.types import Progress, Sample

DEFECT_LABEL = "defect"


@dataclass
class TrainedModel:
    """A fitted network and the manifest fields that describe it."""

    network: nn.Module
    class_names: list[str]
    architecture: dict[str, Any]
    thresholds: dict[str, float]
    metrics: dict[str, Any]
    output_names: list[str]
    calibration_images: np.ndarray | None = None
    # Scores int8 vs fp32 ONNX on the validation split: (fp32 path, int8 path) -> metrics.
    int8_check: Callable[[Path, Path], dict[str, float]] | None = None
    extra_manifest: dict[str, Any] = field(default_factory=dict)
    memory_bank: np.ndarray | None = None

    def write(self, directory: Path, *, params: dict[str, Any], control: RunControl) -> None:
        """Write weights, ONNX (and INT8 ONNX if asked) into ``directory``."""
        self.network.eval()
        state = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
        if self.memory_bank is not None:
            # The bank goes to a .npy (allow_pickle=False on load), not into weights.pt.
            state.pop("memory_bank", None)
            state.pop("bank_sq_norm", None)
            np.save(directory / MEMORY_BANK_NAME, self.memory_bank.astype(np.float32), allow_pickle=False)
        torch.save(state, directory / WEIGHTS_NAME)
        size = (int(params["input_size"][0]), int(params["input_size"][1]))
        export_onnx(self.network, directory / ONNX_NAME, input_size=size, output_names=self.output_names)
        control.check()
        if params.get("int8") and self.calibration_images is not None:
            batches = [self.calibration_images[i : i + 4] for i in range(0, len(self.calibration_images), 4)]
            quantize_int8(directory / ONNX_NAME, directory / ONNX_INT8_NAME, batches)
            if self.int8_check is not None:
                self.metrics.update(self.int8_check(directory / ONNX_NAME, directory / ONNX_INT8_NAME))


def _load_images(samples: Sequence[Sample], size: tuple[int, int], control: RunControl) -> np.ndarray:
    """Decode and resize every sample image: uint8 (N, H, W, 3)."""
    images = np.empty((len(samples), size[0], size[1], 3), dtype=np.uint8)
    for index, sample in enumerate(samples):
        if index % 32 == 0:
            control.check()
        images[index] = resize(read_image(sample.image_path), size)
    return images


def _load_masks(samples: Sequence[Sample], size: tuple[int, int], good_class: str) -> np.ndarray:
    """Defect masks resized to ``size`` (nearest): uint8 (N, H, W) {0, 1}."""
    masks = np.zeros((len(samples), size[0], size[1]), dtype=np.uint8)
    for index, sample in enumerate(samples):
        if sample.mask_path is None and not sample.polygons:
            if not is_good(sample, good_class):
                raise TrainingDataError(f"defect sample {sample.image_path.name} has neither mask nor polygons")
            continue
        image_shape = _image_shape(sample.image_path)
        full = read_mask(sample.mask_path, sample.polygons, image_shape)
        masks[index] = (resize(full * 255, size) > 127).astype(np.uint8)
    return masks


def _image_shape(path: Path) -> tuple[int, int]:
    image = read_image(path)
    return int(image.shape[0]), int(image.shape[1])


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW 0..255."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float()


def _to_train_tensor(images: np.ndarray) -> torch.Tensor:
    """Like ``_to_tensor`` but channels-last, the layout the training networks use."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)


def _channels_last(network: nn.Module, enabled: bool) -> None:
    # Channels-last makes PyTorch's CPU depthwise convolutions ~1.5x faster to train;
    # export and saved weights use the default layout.
    layout = torch.channels_last if enabled else torch.contiguous_format
    network.to(memory_format=layout)  # type: ignore[call-overload]  # stub omits memory_format


def _predict_in_batches(
    network: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, batch_size: int = 32
) -> torch.Tensor:
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            outputs.append(network(_to_tensor(images[start : start + batch_size])))
    return torch.cat(outputs) if outputs else torch.empty(0)


def _optimizer(network: nn.Module, params: dict[str, Any], steps: int) -> tuple[Any, Any]:
    trainable = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=float(params["learning_rate"]), weight_decay=float(params["weight_decay"])
    )
    # One-cycle: short warm-up protects the pretrained features from the large early
    # gradients of a freshly initialised head; cosine decay to the end.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=float(params["learning_rate"]), total_steps=max(steps, 1), pct_start=0.15
    )
    return optimizer, scheduler


# --- classifier ----------------------------------------------------------------------


def train_classifier(
    *, samples: Sequence[Sample], good_class: str, params: dict[str, Any], control: RunControl, seed: int
) -> TrainedModel:
    """Fine-tune Lite0 on good vs each defect class.

    Imbalance: batches are drawn with balanced sampling (each class equally likely).
    Early stopping keeps the epoch with the lowest validation loss; temperature scaling
    is fitted on the validation logits; the defect threshold meets
    ``target_false_reject`` on validation goods.
    """
    labels = [good_class if is_good(s, good_class) else str(s.label) for s in samples]
    defect_classes = sorted(set(labels) - {good_class})
    if good_class not in labels or not defect_classes:
        raise TrainingDataError("a classifier needs good samples and at least one defect class")
    class_names = [good_class, *defect_classes]
    targets = np.array([class_names.index(name) for name in labels])
    size = (int(params["input_size"][0]), int(params["input_size"][1]))
    images = _load_images(samples, size, control)
    train_idx, val_idx = stratified_split(labels, float(params["val_fraction"]), seed)
    if not val_idx:
        raise TrainingDataError("too few samples for a validation split")

    network = ClassifierNet(
        len(class_names), pretrained=bool(params["pretrained"]), standardize=bool(params["standardize"])
    )
    network.encoder.freeze_through(int(params["freeze_through_block"]))
    _channels_last(network, True)
    augment = build_augmentation(seed=seed, strength=float(params["augment"]))
    rng = np.random.default_rng(seed)
    counts = np.bincount(targets[train_idx], minlength=len(class_names)).astype(np.float64)
    # "balanced": every class equally likely per draw; "sqrt": class share proportional to
    # sqrt(count), which still lifts rare defects but shows the good class (the boundary
    # that decides false rejects) far more often and overfits a 9-image class less.
    if params["sampling"] == "balanced":
        weights = 1.0 / counts[targets[train_idx]]
    elif params["sampling"] == "sqrt":
        weights = 1.0 / np.sqrt(counts[targets[train_idx]])
    else:
        raise ValueError(f"unknown sampling {params['sampling']!r}")
    weights /= weights.sum()
    batch_size = int(params["batch_size"])
    steps_per_epoch = max(1, math.ceil(len(train_idx) / batch_size))
    epochs = int(params["epochs"])
    optimizer, scheduler = _optimizer(network, params, epochs * steps_per_epoch)
    criterion = nn.CrossEntropyLoss(label_smoothing=float(params["label_smoothing"]))
    val_images = images[val_idx]
    val_targets = torch.from_numpy(targets[val_idx])

    best_loss = math.inf
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch = 0
    for epoch in range(epochs):
        network.train()
        drawn = rng.choice(np.asarray(train_idx), size=steps_per_epoch * batch_size, p=weights)
        running = 0.0
        for step in range(steps_per_epoch):
            control.check()
            batch_idx = drawn[step * batch_size : (step + 1) * batch_size]
            batch = np.stack([augment(image=images[i])["image"] for i in batch_idx])
            loss = criterion(network.logits(_to_train_tensor(batch)), torch.from_numpy(targets[batch_idx]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += float(loss.detach())
        network.eval()
        val_logits = _predict_in_batches(network.logits, val_images)
        val_loss = float(F.cross_entropy(val_logits, val_targets))
        val_accuracy = float((val_logits.argmax(1) == val_targets).float().mean())
        control.report(Progress(epoch + 1, epochs, running / steps_per_epoch, val_accuracy, "val_accuracy"))
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch + 1
            best_state = copy.deepcopy(network.state_dict())
        elif epoch + 1 - best_epoch >= int(params["patience"]):
            break
        if control.minutes() > float(params["max_minutes"]):
            break
    assert best_state is not None  # at least one epoch ran
    network.load_state_dict(best_state)
    _channels_last(network, False)
    network.eval()

    val_logits = _predict_in_batches(network.logits, val_images)
    temperature = fit_temperature(val_logits, val_targets)
    network.temperature.fill_(temperature)
    probabilities = torch.softmax(val_logits / temperature, dim=1).numpy()
    val_good = val_targets.numpy() == 0
    defect_probability = 1.0 - probabilities[:, 0]
    threshold = threshold_for_false_reject(defect_probability[val_good], float(params["target_false_reject"]))
    # A near-zero threshold (confident model, small validation split) would turn runtime
    # noise, e.g. INT8 rounding, into rejects; below the floor P(defect) is not evidence.
    threshold = max(threshold, float(params["min_defect_probability"]))
    metrics: dict[str, Any] = classification_report(
        probabilities, val_targets.numpy(), class_names, defect_threshold=threshold
    )
    metrics.update(best_epoch=best_epoch, temperature=temperature, val_loss=best_loss)

    calibration = images[train_idx][rng.permutation(len(train_idx))[:16]]

    def int8_check(fp32: Path, int8: Path) -> dict[str, float]:
        return _onnx_accuracy_drop(fp32, int8, val_images, val_targets.numpy())

    return TrainedModel(
        network=network,
        class_names=class_names,
        architecture={
            "backbone": "efficientnet-lite0",
            "head": "avgpool-dropout-linear",
            "standardize": bool(params["standardize"]),
        },
        thresholds={"defect_probability": threshold},
        metrics=metrics,
        output_names=["probabilities"],
        calibration_images=_to_tensor(calibration).numpy(),
        int8_check=int8_check,
    )


def _onnx_accuracy_drop(fp32: Path, int8: Path, images: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Validation accuracy of the fp32 and int8 ONNX models (ONNX Runtime CPU)."""
    import onnxruntime as ort

    results: dict[str, float] = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        predicted = []
        for start in range(0, len(images), 32):
            batch = _to_tensor(images[start : start + 32]).numpy()
            predicted.append(session.run(None, {"images": batch})[0].argmax(1))
        results[f"onnx_{name}_val_accuracy"] = float((np.concatenate(predicted) == targets).mean())
    results["int8_accuracy_drop"] = results["onnx_fp32_val_accuracy"] - results["onnx_int8_val_accuracy"]
    return results


# --- segmenter -----------------------------------------------------------------------


def _dice_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    probabilities = torch.sigmoid(logits)
    intersection = (probabilities * masks).sum(dim=(1, 2, 3))
    total = probabilities.sum(dim=(1, 2, 3)) + masks.sum(dim=(1, 2, 3))
    return (1.0 - (2.0 * intersection + 1.0) / (total + 1.0)).mean()


def train_segmenter(
    *, samples: Sequence[Sample], good_class: str, params: dict[str, Any], control: RunControl, seed: int
) -> TrainedModel:
    """Train the U-Net on defect masks (files or rasterised polygons).

    Good samples contribute empty masks, subsampled to ``good_fraction`` of the defect
    count so they do not drown the rare defect pixels. Loss: BCE + soft Dice. Early
    stopping on validation mean IoU over defect images; the pixel threshold is then
    chosen on the same split.
    """
    defects = [s for s in samples if not is_good(s, good_class)]
    goods = [s for s in samples if is_good(s, good_class)]
    if not defects:
        raise TrainingDataError("a segmenter needs defect samples with masks or polygons")
    rng = np.random.default_rng(seed)
    keep_goods = round(len(defects) * float(params["good_fraction"]))
    goods = [goods[i] for i in sorted(rng.permutation(len(goods))[:keep_goods])]
    chosen = [*defects, *goods]
    labels = [good_class if is_good(s, good_class) else str(s.label) for s in chosen]
    size = (int(params["input_size"][0]), int(params["input_size"][1]))
    images = _load_images(chosen, size, control)
    masks = _load_masks(chosen, size, good_class)
    train_idx, val_idx = stratified_split(labels, float(params["val_fraction"]), seed)
    val_defect_idx = [i for i in val_idx if labels[i] != good_class]
    if not val_defect_idx:
        raise TrainingDataError("too few defect samples for a validation split")

    network = SegmenterNet(pretrained=bool(params["pretrained"]), standardize=bool(params["standardize"]))
    network.encoder.freeze_through(int(params["freeze_through_block"]))
    _channels_last(network, True)
    augment = build_augmentation(seed=seed, strength=float(params["augment"]))
    batch_size = int(params["batch_size"])
    steps_per_epoch = max(1, math.ceil(len(train_idx) / batch_size))
    epochs = int(params["epochs"])
    optimizer, scheduler = _optimizer(network, params, epochs * steps_per_epoch)
    best_iou = -1.0
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch = 0
    val_images = images[val_defect_idx]
    val_masks = masks[val_defect_idx]
    for epoch in range(epochs):
        network.train()
        order = rng.permutation(np.asarray(train_idx))
        running = 0.0
        for step in range(steps_per_epoch):
            control.check()
            batch_idx = order[step * batch_size : (step + 1) * batch_size]
            if len(batch_idx) < 2:  # batch norm needs two samples
                continue
            pairs = [augment(image=images[i], mask=masks[i]) for i in batch_idx]
            batch = _to_train_tensor(np.stack([p["image"] for p in pairs]))
            target = torch.from_numpy(np.stack([p["mask"] for p in pairs])[:, None].astype(np.float32))
            logits = network.logits(batch)
            loss = F.binary_cross_entropy_with_logits(logits, target) + _dice_loss(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # sum of tensors loses its type in torch stubs
            optimizer.step()
            scheduler.step()
            running += float(loss.detach())
        network.eval()
        probabilities = _predict_in_batches(network, val_images, batch_size=8).numpy()[:, 0]
        iou, _ = mask_iou_dice(probabilities >= 0.5, val_masks > 0)
        control.report(Progress(epoch + 1, epochs, running / steps_per_epoch, iou, "val_iou"))
        if iou > best_iou:
            best_iou, best_epoch = iou, epoch + 1
            best_state = copy.deepcopy(network.state_dict())
        elif epoch + 1 - best_epoch >= int(params["patience"]):
            break
        if control.minutes() > float(params["max_minutes"]):
            break
    assert best_state is not None
    network.load_state_dict(best_state)
    _channels_last(network, False)
    network.eval()
    probabilities = _predict_in_batches(network, val_images, batch_size=8).numpy()[:, 0]
    candidates = [0.3, 0.4, 0.5, 0.6, 0.7]
    scored = [(mask_iou_dice(probabilities >= t, val_masks > 0)[0], t) for t in candidates]
    best_val_iou, threshold = max(scored)
    _, dice = mask_iou_dice(probabilities >= threshold, val_masks > 0)
    defect_class = defects[0].label if len({s.label for s in defects}) == 1 else DEFECT_LABEL
    calibration = images[np.asarray(train_idx)[rng.permutation(len(train_idx))[:8]]]
    return TrainedModel(
        network=network,
        class_names=[good_class, str(defect_class)],
        architecture={
            "backbone": "efficientnet-lite0",
            "decoder": "unet",
            "skips": list(SegmenterNet.SKIPS),
            "standardize": bool(params["standardize"]),
        },
        thresholds={"pixel_probability": threshold, "min_defect_pixels": int(params["min_defect_pixels"])},
        metrics={"val_iou": best_val_iou, "val_dice": dice, "best_epoch": best_epoch},
        output_names=["probability"],
        calibration_images=_to_tensor(calibration).numpy(),
        extra_manifest={"defect_class": str(defect_class)},
    )


# --- anomaly -------------------------------------------------------------------------


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


def train_anomaly(
    *, samples: Sequence[Sample], good_class: str, params: dict[str, Any], control: RunControl, seed: int
) -> TrainedModel:
    """Fit a PatchCore memory bank on good samples only.

    A ``val_fraction`` of the goods is held out: their scores set the image threshold
    (``target_false_reject``) and the heatmap scale. Defect samples, if given, are not
    learned from; they only add a validation AUROC to the metrics.
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
    size = (int(params["input_size"][0]), int(params["input_size"][1]))
    architecture: dict[str, Any] = {
        "backbone": "efficientnet-lite0",
        "method": "patchcore",
        "taps": [int(t) for t in params["taps"]],
        "neighbourhood": int(params["neighbourhood"]),
        "blur_sigma": float(params["blur_sigma"]),
        "standardize": bool(params["standardize"]),
        "aggregation": str(params["aggregation"]),
    }
    network = PatchCoreNet(
        taps=architecture["taps"],
        neighbourhood=architecture["neighbourhood"],
        bank_size=1,
        blur_sigma=architecture["blur_sigma"],
        pretrained=bool(params["pretrained"]),
        standardize=architecture["standardize"],
        aggregation=architecture["aggregation"],
    ).eval()

    chunks: list[torch.Tensor] = []
    chunk_size = 16
    total = math.ceil(len(fit_goods) / chunk_size)
    for chunk_index, start in enumerate(range(0, len(fit_goods), chunk_size)):
        control.check()
        images = _load_images(fit_goods[start : start + chunk_size], size, control)
        with torch.inference_mode():
            patches = network.features(network.standardize(_to_tensor(images)))
        chunks.append(patches.permute(0, 2, 3, 1).reshape(-1, patches.shape[1]))
        control.report(Progress(chunk_index + 1, total, 0.0, None, "feature_chunks"))
    features = torch.cat(chunks)
    del chunks
    generator = torch.Generator().manual_seed(seed)
    candidates = int(params["coreset_candidates"])
    if len(features) > candidates:
        # Uniform pre-sampling bounds the coreset cost; neighbouring patches of the same
        # image are near-duplicates, so little is lost.
        features = features[torch.randperm(len(features), generator=generator)[:candidates]]
    control.check()
    bank_size = min(int(params["bank_size"]), len(features))
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
    )
    network.features.load_state_dict(extractor.state_dict())
    network.set_memory_bank(bank)
    network.eval()
    control.check()

    val_images = _load_images(val_goods, size, control)
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
    metrics: dict[str, Any] = {"bank_size": bank_size, "fit_images": len(fit_goods), "val_goods": len(val_goods)}
    if defects:
        defect_scores, _ = _score(network, _load_images(defects, size, control))
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
        memory_bank=bank.numpy(),
    )


def _score(network: PatchCoreNet, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, maps = [], []
    with torch.inference_mode():
        for start in range(0, len(images), 8):
            image_scores, patch_scores = network(_to_tensor(images[start : start + 8]))
            scores.append(image_scores.numpy())
            maps.append(patch_scores.numpy())
    return np.concatenate(scores), np.concatenate(maps)
