"""What the three trainers share: the fitted-model record, image loading, tensors, optimiser.

Images are decoded once and kept in memory at the network's input size (uint8), which is
what makes several epochs over ~1000 images affordable on 2 CPU cores.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from workers.ml.augment import build_augmentation
from workers.ml.errors import TrainingDataError
from workers.ml.export import export_onnx, quantize_int8
from workers.ml.imaging import read_image, read_mask, resize
from workers.ml.regions import blank_zones, crop, zero_zones
from workers.ml.training import (
    MEMORY_BANK_NAME,
    ONNX_INT8_NAME,
    ONNX_NAME,
    WEIGHTS_NAME,
    RunControl,
    is_good,
)
from workers.ml.types import Sample

DEFECT_LABEL = "defect"

T = TypeVar("T")


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
    # ONNX node-name prefixes INT8 quantisation leaves in float (see ``quantize_int8``).
    float_modules: list[str] = field(default_factory=list)
    # How INT8 quantisation sets activation ranges (``quantize_int8``'s ``method``).
    int8_method: str = "minmax"
    # The [height, width] the network was fitted at, where the trainer chose it from the data
    # (the anomaly detector: ``input_size_with_defect_bank`` when it built a defect bank).
    fitted_size: tuple[int, int] | None = None

    def input_size(self, params: dict[str, Any]) -> tuple[int, int]:
        """The [height, width] the network takes: what it was fitted at."""
        if self.fitted_size is not None:
            return self.fitted_size
        return int(params["input_size"][0]), int(params["input_size"][1])

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
        export_onnx(
            self.network, directory / ONNX_NAME, input_size=self.input_size(params), output_names=self.output_names
        )
        control.check()
        if params.get("int8") and self.calibration_images is not None:
            batches = [self.calibration_images[i : i + 4] for i in range(0, len(self.calibration_images), 4)]
            quantize_int8(
                directory / ONNX_NAME,
                directory / ONNX_INT8_NAME,
                batches,
                float_modules=self.float_modules,
                method=self.int8_method,  # type: ignore[arg-type]  # checked by train()
            )
            if self.int8_check is not None:
                self.metrics.update(self.int8_check(directory / ONNX_NAME, directory / ONNX_INT8_NAME))


def load_images(samples: Sequence[Sample], size: tuple[int, int], control: RunControl) -> np.ndarray:
    """Decode and resize every sample image: uint8 (N, H, W, 3)."""
    images = np.empty((len(samples), size[0], size[1], 3), dtype=np.uint8)
    for index, sample in enumerate(samples):
        if index % 32 == 0:
            control.check()
        images[index] = resize(
            crop(blank_zones(read_image(sample.image_path), sample.ignore_zones), sample.region), size
        )
    return images


def sample_mask(sample: Sample) -> np.ndarray:
    """The sample's defect mask, uint8 {0, 1}, zeroed in its ignore zones and cut to its
    region like its image."""
    full = read_mask(sample.mask_path, sample.polygons, image_shape(sample.image_path))
    return crop(zero_zones(full, sample.ignore_zones), sample.region)


def load_masks(samples: Sequence[Sample], size: tuple[int, int], good_class: str) -> np.ndarray:
    """Defect masks resized to ``size`` (nearest): uint8 (N, H, W) {0, 1}."""
    masks = np.zeros((len(samples), size[0], size[1]), dtype=np.uint8)
    for index, sample in enumerate(samples):
        if sample.mask_path is None and not sample.polygons:
            if not is_good(sample, good_class):
                raise TrainingDataError(f"defect sample {sample.image_path.name} has neither mask nor polygons")
            continue
        masks[index] = (resize(sample_mask(sample) * 255, size) > 127).astype(np.uint8)
    return masks


def image_shape(path: Path) -> tuple[int, int]:
    image = read_image(path)
    return int(image.shape[0]), int(image.shape[1])


def training_device() -> torch.device:
    """Where training runs: ``LOUPE_TRAIN_DEVICE`` (auto, cpu, cuda, cuda:N); auto picks the
    GPU when this PyTorch build and host have one. Artifacts are always written from CPU."""
    wanted = os.environ.get("LOUPE_TRAIN_DEVICE", "auto").strip().lower() or "auto"
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(wanted)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"LOUPE_TRAIN_DEVICE={wanted} but this host or PyTorch build has no CUDA")
    return device


def loader_threads(device: torch.device) -> int:
    """Threads that augment the next batches while this one trains: none on the CPU (the
    network already uses every core), on a GPU host enough to keep the GPU fed; measured on
    an H200 with 16 cores, augmenting in the training thread left the GPU idle most of each
    step. ``LOUPE_TRAIN_LOADER_THREADS`` overrides."""
    configured = os.environ.get("LOUPE_TRAIN_LOADER_THREADS", "").strip()
    if configured:
        return max(0, int(configured))
    if device.type == "cpu":
        return 0
    return min(8, max(1, (os.cpu_count() or 2) - 2))


class BatchAugmenter:
    """Augmented training batches, each drawn from its own seed (run seed, epoch, step), so a
    run gives the same batches whether they are prepared inline or ahead on worker threads.

    ``batches(epoch, index_batches, make)`` yields ``make(augment, indices)`` for each batch in
    order; with ``threads`` > 0 up to ``2 * threads`` batches are prepared ahead (albumentations'
    OpenCV kernels release the GIL, so threads run in parallel with the training step).
    """

    def __init__(self, *, seed: int, strength: float, threads: int) -> None:
        self.seed = seed
        self.strength = strength
        self.threads = threads
        self._local = threading.local()

    def _augment(self, batch_seed: int) -> Any:
        pipeline = getattr(self._local, "pipeline", None)
        if pipeline is None:
            pipeline = self._local.pipeline = build_augmentation(seed=0, strength=self.strength)
        pipeline.set_random_seed(batch_seed)
        return pipeline

    def batches(
        self, epoch: int, index_batches: Sequence[np.ndarray], make: Callable[[Any, np.ndarray], T]
    ) -> Generator[T, None, None]:
        def prepare(step: int) -> T:
            batch_seed = (self.seed * 1_000_003 + epoch * 100_003 + step) % 2**32
            return make(self._augment(batch_seed), index_batches[step])

        if self.threads <= 0:
            for step in range(len(index_batches)):
                yield prepare(step)
            return
        pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="augment")
        pending: deque[Future[T]] = deque()
        try:
            ahead = 2 * self.threads
            for step in range(min(ahead, len(index_batches))):
                pending.append(pool.submit(prepare, step))
            for step in range(len(index_batches)):
                batch = pending.popleft().result()
                if step + ahead < len(index_batches):
                    pending.append(pool.submit(prepare, step + ahead))
                yield batch
        finally:  # a cancelled or failed run must not leave threads augmenting
            pool.shutdown(wait=True, cancel_futures=True)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW 0..255."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float()


def to_train_tensor(images: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
    """Like ``to_tensor`` but channels-last, the layout the training networks use. With a
    ``device`` the uint8 batch is copied there first (a quarter of the bytes of float32)."""
    tensor = torch.from_numpy(images)
    if device is not None:
        tensor = tensor.to(device, non_blocking=True)
    return tensor.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)


def channels_last(network: nn.Module, enabled: bool) -> None:
    # Channels-last makes PyTorch's CPU depthwise convolutions ~1.5x faster to train;
    # export and saved weights use the default layout.
    layout = torch.channels_last if enabled else torch.contiguous_format
    network.to(memory_format=layout)  # type: ignore[call-overload]  # stub omits memory_format


def predict_in_batches(
    network: Callable[[torch.Tensor], torch.Tensor],
    images: np.ndarray,
    batch_size: int = 32,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Outputs on the CPU, whatever device the network runs on."""
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = to_tensor(images[start : start + batch_size])
            if device is not None:
                batch = batch.to(device, non_blocking=True)
            outputs.append(network(batch).cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)


class BudgetSchedule:
    """Learning rate per step: linear warm-up to ``max_lr``, then cosine decay to zero at
    the last *planned* step.

    The plan is at most ``epochs`` epochs, fewer when the median epoch time so far says
    they would not finish within ``max_minutes``; it is re-made after every epoch, so one
    slow epoch (another job on the machine) costs a few epochs, not the rest of the budget.
    Without this a run cut by the clock stops at a high learning rate, far from the
    annealed weights a finished schedule ends on (MTD segmenter, 2-core box: stopped at
    epoch 16 of 25, mid-decay). On a machine fast enough for every epoch the plan never
    changes, so a seed still trains the same model.
    """

    WARMUP = 0.15
    START_FACTOR = 1.0 / 25.0  # the first step's rate, as a share of max_lr (as one-cycle)

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, max_lr: float, steps_per_epoch: int, epochs: int, max_minutes: float
    ) -> None:
        self.optimizer = optimizer
        self.max_lr = max_lr
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.epochs = max(1, epochs)
        self.planned_epochs = self.epochs
        self.max_minutes = max_minutes
        self._epoch_minutes: list[float] = []
        self.steps_done = 0
        self._apply()

    @property
    def planned_steps(self) -> int:
        return self.planned_epochs * self.steps_per_epoch

    def learning_rate(self, step: int) -> float:
        progress = min(1.0, step / max(1, self.planned_steps))
        if progress < self.WARMUP:
            share = self.START_FACTOR + (1.0 - self.START_FACTOR) * progress / self.WARMUP
            return self.max_lr * share
        decay = (progress - self.WARMUP) / (1.0 - self.WARMUP)
        return self.max_lr * 0.5 * (1.0 + math.cos(math.pi * decay))

    def step(self) -> None:
        self.steps_done += 1
        self._apply()

    def _apply(self) -> None:
        rate = self.learning_rate(self.steps_done)
        for group in self.optimizer.param_groups:
            group["lr"] = rate * float(group.get("lr_scale", 1.0))

    def end_epoch(self, *, epochs_done: int, minutes_elapsed: float, minutes_per_epoch: float) -> bool:
        """Re-plan after an epoch; True when the plan is complete and training should stop."""
        self._epoch_minutes.append(max(0.0, minutes_per_epoch))
        typical = float(np.median(self._epoch_minutes))
        affordable = int((self.max_minutes - minutes_elapsed) / typical) if typical > 0 else self.epochs
        self.planned_epochs = max(epochs_done, min(self.epochs, epochs_done + affordable))
        return epochs_done >= self.planned_epochs


def make_optimizer(
    network: nn.Module, params: dict[str, Any], steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, BudgetSchedule]:
    # The pretrained encoder learns at ``learning_rate``; the freshly initialised rest (head,
    # decoder) at ``head_lr_multiplier`` times that: a U-Net decoder learns from scratch
    # and is what holds a CPU-budgeted segmenter back.
    encoder = getattr(network, "encoder", None)
    encoder_ids = {id(p) for p in encoder.parameters()} if isinstance(encoder, nn.Module) else set()
    trainable = [p for p in network.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) in encoder_ids], "lr_scale": 1.0},
        {
            "params": [p for p in trainable if id(p) not in encoder_ids],
            "lr_scale": float(params.get("head_lr_multiplier", 1.0)),
        },
    ]
    optimizer = torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=float(params["learning_rate"]),
        weight_decay=float(params["weight_decay"]),
    )
    # Warm-up protects the pretrained features from the large early gradients of a freshly
    # initialised head; the decay fits the epochs and the time budget (BudgetSchedule).
    schedule = BudgetSchedule(
        optimizer,
        max_lr=float(params["learning_rate"]),
        steps_per_epoch=steps_per_epoch,
        epochs=int(params["epochs"]),
        max_minutes=float(params["max_minutes"]),
    )
    return optimizer, schedule


def forward_only(
    module: nn.Module, input_size: tuple[int, int], device: torch.device
) -> Callable[[np.ndarray], torch.Tensor]:
    """A fast forward pass of a frozen ``module`` (images -> one tensor): uint8 NHWC in, float32
    CPU tensor out.

    On the CPU the module is exported to ONNX and run by ONNX Runtime, which is what serves
    it later: measured on the 2-core box, Lite0 to block 12 at 320 px took ~120 ms per
    image in PyTorch eager against ~7 ms in ONNX Runtime, so the patch classifier's four
    feature views of ~600 images take well under a minute instead of ~5. On a GPU host it
    runs in PyTorch on that device.
    """
    import tempfile

    import onnxruntime as ort

    module.eval()
    if device.type != "cpu":
        module.to(device)

        def on_device(images: np.ndarray) -> torch.Tensor:
            with torch.inference_mode():
                out: torch.Tensor = module(to_tensor(images).to(device))
            return out.float().cpu()

        return on_device
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "forward.onnx"
        export_onnx(module, path, input_size=input_size, output_names=["out"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def on_cpu(images: np.ndarray) -> torch.Tensor:
        (out,) = session.run(None, {"images": to_tensor(images).numpy()})
        return torch.from_numpy(out)

    return on_cpu
