"""Classifier trainer: dispatches to the head asked for; the global head (Lite0 fine-tuned on
good vs each defect class) lives here."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workers.ml.errors import TrainingDataError
from workers.ml.metrics import classification_report, example_errors, fit_temperature, threshold_for_false_reject
from workers.ml.networks import ClassifierNet
from workers.ml.sufficiency import classifier_data_warnings
from workers.ml.trainers.common import (
    BatchAugmenter,
    TrainedModel,
    channels_last,
    load_images,
    loader_threads,
    make_optimizer,
    predict_in_batches,
    to_tensor,
    to_train_tensor,
    training_device,
)
from workers.ml.trainers.patch_classifier import train_patch_classifier
from workers.ml.training import RunControl, is_good, stratified_split
from workers.ml.types import Progress, Sample


def train_classifier(
    *, samples: Sequence[Sample], good_class: str, params: dict[str, Any], control: RunControl, seed: int
) -> TrainedModel:
    """Train a classifier with the head ``params["head"]`` names: "patch" (default, see
    ``patch_classifier``) or "global", Lite0 fine-tuned on good vs each defect class.

    Global head: imbalance is met by the ``sampling`` rule (balanced or sqrt class shares).
    Early stopping keeps the epoch with the lowest validation loss; temperature scaling
    is fitted on the validation logits; the defect threshold meets
    ``target_false_reject`` on validation goods.
    """
    if params["head"] == "patch":
        return train_patch_classifier(samples=samples, good_class=good_class, params=params, control=control, seed=seed)
    if params["head"] != "global":
        raise ValueError(f"unknown classifier head {params['head']!r}")
    labels = [good_class if is_good(s, good_class) else str(s.label) for s in samples]
    defect_classes = sorted(set(labels) - {good_class})
    if good_class not in labels or not defect_classes:
        raise TrainingDataError("a classifier needs good samples and at least one defect class")
    class_names = [good_class, *defect_classes]
    targets = np.array([class_names.index(name) for name in labels])
    size = (int(params["input_size"][0]), int(params["input_size"][1]))
    images = load_images(samples, size, control)
    train_idx, val_idx = stratified_split(labels, float(params["val_fraction"]), seed)
    if not val_idx:
        raise TrainingDataError("too few samples for a validation split")

    network = ClassifierNet(
        len(class_names), pretrained=bool(params["pretrained"]), standardize=bool(params["standardize"])
    )
    network.encoder.freeze_through(int(params["freeze_through_block"]))
    device = training_device()
    network.to(device)
    channels_last(network, True)
    augmenter = BatchAugmenter(seed=seed, strength=float(params["augment"]), threads=loader_threads(device))
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
    optimizer, scheduler = make_optimizer(network, params, steps_per_epoch)
    criterion = nn.CrossEntropyLoss(label_smoothing=float(params["label_smoothing"]))
    val_images = images[val_idx]
    val_targets = torch.from_numpy(targets[val_idx])

    best_loss = math.inf
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch = 0
    for epoch in range(epochs):
        epoch_started = control.minutes()
        network.train()
        drawn = rng.choice(np.asarray(train_idx), size=steps_per_epoch * batch_size, p=weights)
        running = 0.0
        index_batches = [drawn[step * batch_size : (step + 1) * batch_size] for step in range(steps_per_epoch)]
        augmented = augmenter.batches(
            epoch, index_batches, lambda augment, idx: np.stack([augment(image=images[i])["image"] for i in idx])
        )
        for batch_idx, batch in zip(index_batches, augmented, strict=True):
            control.check()
            inputs = to_train_tensor(batch, device)
            loss = criterion(network.logits(inputs), torch.from_numpy(targets[batch_idx]).to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += float(loss.detach())
        network.eval()
        val_logits = predict_in_batches(network.logits, val_images, device=device)
        val_loss = float(F.cross_entropy(val_logits, val_targets))
        val_accuracy = float((val_logits.argmax(1) == val_targets).float().mean())
        control.report(Progress(epoch + 1, epochs, running / steps_per_epoch, val_accuracy, "val_accuracy"))
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch + 1
            best_state = copy.deepcopy(network.state_dict())
        elif epoch + 1 - best_epoch >= int(params["patience"]):
            break
        elapsed = control.minutes()
        plan_done = scheduler.end_epoch(
            epochs_done=epoch + 1, minutes_elapsed=elapsed, minutes_per_epoch=elapsed - epoch_started
        )
        if plan_done or elapsed > float(params["max_minutes"]):
            break
    assert best_state is not None  # at least one epoch ran
    network.load_state_dict(best_state)
    network.to("cpu")  # the rest (calibration, export) runs where the artifacts are written
    channels_last(network, False)
    network.eval()

    val_logits = predict_in_batches(network.logits, val_images)
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
    # Measured on the patch head; the global head learns from image labels alone and needs no fewer.
    warnings = classifier_data_warnings(
        fitted_per_class={name: int(counts[index]) for index, name in enumerate(class_names) if index > 0}
    )
    if warnings:
        metrics["data_warnings"] = warnings
    # Which training samples (indices into ``samples``) the model gets wrong, for people to look at.
    metrics["example_errors"] = [
        {**error, "sample": int(val_idx[error.pop("index")])}
        for error in example_errors(probabilities, val_targets.numpy(), class_names, defect_threshold=threshold)
    ]

    calibration = images[train_idx][rng.permutation(len(train_idx))[: int(params["int8_calibration_images"])]]

    def int8_check(fp32: Path, int8: Path) -> dict[str, float]:
        return _onnx_accuracy_drop(fp32, int8, val_images, val_targets.numpy(), threshold)

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
        calibration_images=to_tensor(calibration).numpy(),
        int8_method=str(params["int8_calibration"]),
        int8_check=int8_check,
    )


def _onnx_accuracy_drop(
    fp32: Path, int8: Path, images: np.ndarray, targets: np.ndarray, defect_threshold: float
) -> dict[str, float]:
    """Validation accuracy of the fp32 and int8 ONNX models (ONNX Runtime CPU), each part
    decided as served: rejected at ``defect_threshold`` on P(defect), then its likeliest
    defect class; and the share of parts whose pass/fail decision the two agree on."""
    import onnxruntime as ort

    results: dict[str, float] = {}
    rejected: dict[str, np.ndarray] = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        probabilities = np.concatenate(
            [
                session.run(None, {"images": to_tensor(images[start : start + 32]).numpy()})[0]
                for start in range(0, len(images), 32)
            ]
        )
        rejected[name] = 1.0 - probabilities[:, 0] >= defect_threshold
        decided = np.where(rejected[name], 1 + probabilities[:, 1:].argmax(axis=1), 0)
        results[f"onnx_{name}_val_accuracy"] = float((decided == targets).mean())
    results["int8_accuracy_drop"] = results["onnx_fp32_val_accuracy"] - results["onnx_int8_val_accuracy"]
    results["int8_decision_agreement"] = float((rejected["fp32"] == rejected["int8"]).mean())
    return results
