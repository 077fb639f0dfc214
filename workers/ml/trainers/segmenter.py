"""Segmenter trainer: U-Net over Lite0 from defect masks or rasterised polygons."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
import torch.nn.functional as F

from workers.ml.errors import TrainingDataError
from workers.ml.metrics import mask_iou_dice
from workers.ml.networks import SegmenterNet
from workers.ml.trainers.common import (
    DEFECT_LABEL,
    BatchAugmenter,
    TrainedModel,
    channels_last,
    load_images,
    load_masks,
    loader_threads,
    make_optimizer,
    predict_in_batches,
    to_tensor,
    to_train_tensor,
    training_device,
)
from workers.ml.training import RunControl, is_good, stratified_split
from workers.ml.types import Progress, Sample


def _dice_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    probabilities = torch.sigmoid(logits)
    intersection = (probabilities * masks).sum(dim=(1, 2, 3))
    total = probabilities.sum(dim=(1, 2, 3)) + masks.sum(dim=(1, 2, 3))
    return (1.0 - (2.0 * intersection + 1.0) / (total + 1.0)).mean()


def _training_crop(crop_size: int, size: tuple[int, int], *, seed: int) -> A.Compose | None:
    """Square training crops of ``crop_size`` px, most of them around a defect.

    The network is fully convolutional, so it trains on crops and predicts whole images:
    a 160 px crop costs a third of a 256 px step, and centring most crops on the rare
    defect pixels spends those steps where the masks are. 0 (or a crop as large as the
    input) trains on whole images. One pipeline per batch, seeded from the batch, so the
    augmentation threads share nothing and a run is reproducible.
    """
    if crop_size <= 0 or crop_size >= min(size):
        return None
    return A.Compose(
        [
            A.OneOf(
                [
                    A.CropNonEmptyMaskIfExists(height=crop_size, width=crop_size, p=0.7),
                    A.RandomCrop(height=crop_size, width=crop_size, p=0.3),
                ],
                p=1.0,
            )
        ],
        seed=seed,
    )


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
    images = load_images(chosen, size, control)
    masks = load_masks(chosen, size, good_class)
    train_idx, val_idx = stratified_split(labels, float(params["val_fraction"]), seed)
    val_defect_idx = [i for i in val_idx if labels[i] != good_class]
    if not val_defect_idx:
        raise TrainingDataError("too few defect samples for a validation split")

    final_stride = int(params["final_stride"])
    network = SegmenterNet(
        pretrained=bool(params["pretrained"]), standardize=bool(params["standardize"]), final_stride=final_stride
    )
    network.encoder.freeze_through(int(params["freeze_through_block"]))
    device = training_device()
    network.to(device)
    channels_last(network, True)
    augmenter = BatchAugmenter(seed=seed, strength=float(params["augment"]), threads=loader_threads(device))
    crop_size = int(params["train_crop"])
    batch_size = int(params["batch_size"])
    steps_per_epoch = max(1, math.ceil(len(train_idx) / batch_size))
    epochs = int(params["epochs"])
    optimizer, scheduler = make_optimizer(network, params, steps_per_epoch)
    best_iou = -1.0
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch = 0
    val_images = images[val_defect_idx]
    val_masks = masks[val_defect_idx]
    for epoch in range(epochs):
        epoch_started = control.minutes()
        network.train()
        order = rng.permutation(np.asarray(train_idx))
        running = 0.0
        # Batch norm needs two samples: a last batch of one is dropped.
        index_batches = [
            batch_idx
            for step in range(steps_per_epoch)
            if len(batch_idx := order[step * batch_size : (step + 1) * batch_size]) >= 2
        ]

        def make(augment: Any, idx: np.ndarray, epoch: int = epoch) -> tuple[np.ndarray, np.ndarray]:
            pairs = [augment(image=images[i], mask=masks[i]) for i in idx]
            crop = _training_crop(crop_size, size, seed=(seed * 1_000_003 + epoch * 100_003 + int(idx.sum())) % 2**32)
            if crop is not None:
                pairs = [crop(image=p["image"], mask=p["mask"]) for p in pairs]
            return np.stack([p["image"] for p in pairs]), np.stack([p["mask"] for p in pairs])

        for image_batch, mask_batch in augmenter.batches(epoch, index_batches, make):
            control.check()
            batch = to_train_tensor(image_batch, device)
            target = torch.from_numpy(mask_batch[:, None]).to(device, non_blocking=True).float()
            # bf16 autocast (off by default): ~25 % faster steps on a CPU with AVX-512 BF16;
            # the loss is computed in fp32.
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(params["bf16"])):
                logits = network.logits(batch)
            logits = logits.float()
            loss = F.binary_cross_entropy_with_logits(logits, target) + _dice_loss(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # sum of tensors loses its type in torch stubs
            optimizer.step()
            scheduler.step()
            running += float(loss.detach())
        network.eval()
        probabilities = predict_in_batches(network, val_images, batch_size=8, device=device).numpy()[:, 0]
        iou, _ = mask_iou_dice(probabilities >= 0.5, val_masks > 0)
        control.report(Progress(epoch + 1, epochs, running / steps_per_epoch, iou, "val_iou"))
        if iou > best_iou:
            best_iou, best_epoch = iou, epoch + 1
            best_state = copy.deepcopy(network.state_dict())
        elif epoch + 1 - best_epoch >= int(params["patience"]):
            break
        elapsed = control.minutes()
        plan_done = scheduler.end_epoch(
            epochs_done=epoch + 1, minutes_elapsed=elapsed, minutes_per_epoch=elapsed - epoch_started
        )
        if plan_done or elapsed > float(params["max_minutes"]):
            break
    assert best_state is not None
    network.load_state_dict(best_state)
    network.to("cpu")  # threshold search and export run where the artifacts are written
    channels_last(network, False)
    network.eval()
    probabilities = predict_in_batches(network, val_images, batch_size=8).numpy()[:, 0]
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
            "final_stride": final_stride,
        },
        thresholds={"pixel_probability": threshold, "min_defect_pixels": int(params["min_defect_pixels"])},
        metrics={"val_iou": best_val_iou, "val_dice": dice, "best_epoch": best_epoch},
        output_names=["probability"],
        calibration_images=to_tensor(calibration).numpy(),
        extra_manifest={"defect_class": str(defect_class)},
    )
