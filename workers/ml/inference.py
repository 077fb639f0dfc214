"""One ``Inferencer`` interface for every runtime: ONNX Runtime in production, PyTorch
eager for training-time checks and parity tests.

Both backends share pre-processing (resize to the manifest's input size; normalisation
is inside the network) and post-processing (labels, heatmaps and masks at the input
image's resolution), so they differ only in how a float32 NCHW batch becomes outputs.

An inferencer is created once per worker process and reused: ``load`` verifies the
artifact and builds the session (cost: ~0.1-1 s); ``predict`` is then cheap. It is not
safe to call ``predict`` from several threads at once on the PyTorch backend.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import cv2
import numpy as np

from workers.ml.artifacts import VerifiedArtifact
from workers.ml.errors import ArtifactIntegrityError
from workers.ml.imaging import as_rgb, to_batch
from workers.ml.types import Prediction

ANOMALY_LABEL = "anomaly"


@runtime_checkable
class Inferencer(Protocol):
    """Loads one verified artifact and predicts on batches of images."""

    kind: str

    def load(self, artifact_dir: Path, expected_sha256: Mapping[str, str]) -> None:
        """Verify every file against ``expected_sha256`` and prepare the model.

        Raises ``ArtifactIntegrityError`` or ``UnsafeArtifactError``; never unpickles.
        """
        ...

    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """One ``Prediction`` per image (HxW or HxWx3 uint8, grayscale or RGB), same order."""
        ...


class _InferencerBase:
    """Shared pre/post-processing; subclasses implement ``_prepare`` and ``_run``."""

    kind: str = ""
    # Largest batch sent to the runtime at once; anomaly scoring materialises a
    # (patches x memory bank) matrix per image, so it gets smaller chunks.
    MAX_BATCH = {"classifier": 32, "segmenter": 8, "anomaly": 4}

    def __init__(self) -> None:
        self.manifest: dict[str, Any] = {}
        self._loaded = False

    def load(self, artifact_dir: Path, expected_sha256: Mapping[str, str]) -> None:
        artifact = VerifiedArtifact(Path(artifact_dir), expected_sha256)
        manifest = artifact.manifest
        if manifest.get("kind") not in {"classifier", "anomaly", "segmenter"}:
            raise ArtifactIntegrityError(f"unknown model kind {manifest.get('kind')!r}")
        self.manifest = manifest
        self.kind = str(manifest["kind"])
        self._prepare(artifact)
        self._loaded = True

    @property
    def input_size(self) -> tuple[int, int]:
        height, width = self.manifest["input_size"]
        return int(height), int(width)

    @property
    def class_names(self) -> list[str]:
        return [str(name) for name in self.manifest["class_names"]]

    def _prepare(self, artifact: VerifiedArtifact) -> None:
        raise NotImplementedError

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def forward_batch(self, batch: np.ndarray) -> list[np.ndarray]:
        """Raw network outputs for a float32 NCHW batch at ``input_size`` (values 0..255)."""
        return self._run(np.ascontiguousarray(batch, dtype=np.float32))

    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        if not self._loaded:
            raise RuntimeError("call load() before predict()")
        rgb = [as_rgb(image) for image in images]
        predictions: list[Prediction] = []
        step = self.MAX_BATCH[self.kind]
        for start in range(0, len(rgb), step):
            chunk = rgb[start : start + step]
            outputs = self.forward_batch(to_batch(chunk, self.input_size))
            for index, image in enumerate(chunk):
                predictions.append(self._postprocess(image.shape[:2], [out[index] for out in outputs]))
        return predictions

    def _postprocess(self, shape: tuple[int, int], outputs: list[np.ndarray]) -> Prediction:
        if self.kind == "classifier":
            # A patch-head classifier also says where: its per-patch P(defect) map.
            return self._classify(outputs[0], shape, outputs[1][0] if len(outputs) > 1 else None)
        if self.kind == "anomaly":
            return self._score_anomaly(shape, float(outputs[0]), outputs[1][0])
        return self._segment(shape, outputs[0][0])

    def _classify(self, probabilities: np.ndarray, shape: tuple[int, int], defect_map: np.ndarray | None) -> Prediction:
        names = self.class_names
        good = self.manifest["good_class"]
        by_name = {name: float(p) for name, p in zip(names, probabilities, strict=True)}
        defect_probability = 1.0 - by_name[good]
        # The defect threshold is chosen on validation goods for the target false-reject
        # rate, so a part is rejected on P(defect), not on the arg-max class.
        if defect_probability >= float(self.manifest["thresholds"]["defect_probability"]):
            label = max((n for n in names if n != good), key=lambda n: by_name[n])
        else:
            label = good
        # P(defect) is 1 - probabilities[good]; the heatmap is the patch head's P(defect) map.
        heatmap = None
        if defect_map is not None:
            resized = cv2.resize(defect_map.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
            heatmap = np.clip(resized, 0.0, 1.0).astype(np.float32)
        return Prediction(label=label, probabilities=by_name, anomaly_score=None, heatmap=heatmap, mask=None)

    def _score_anomaly(self, shape: tuple[int, int], score: float, patch_scores: np.ndarray) -> Prediction:
        thresholds = self.manifest["thresholds"]
        # Heatmap scale: 0 = typical good patch, 1 = 1.5x the worst patch of a held-out
        # good part; fixed per model so heatmaps of different images are comparable.
        low = float(thresholds["heatmap_low"])
        high = float(thresholds["heatmap_high"])
        resized = cv2.resize(patch_scores.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        heatmap = np.clip((resized - low) / max(high - low, 1e-6), 0.0, 1.0).astype(np.float32)
        threshold = float(thresholds["image_score"])
        pixel_threshold = float(thresholds.get("pixel_score", threshold))
        mask = np.where(resized >= pixel_threshold, 255, 0).astype(np.uint8)
        label = ANOMALY_LABEL if score >= threshold else self.manifest["good_class"]
        return Prediction(label=label, probabilities=None, anomaly_score=score, heatmap=heatmap, mask=mask)

    def _segment(self, shape: tuple[int, int], probability: np.ndarray) -> Prediction:
        thresholds = self.manifest["thresholds"]
        resized = cv2.resize(probability.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        heatmap = np.clip(resized, 0.0, 1.0).astype(np.float32)
        mask = np.where(heatmap >= float(thresholds["pixel_probability"]), 255, 0).astype(np.uint8)
        defect_area = int(np.count_nonzero(mask))
        good = self.manifest["good_class"]
        label = (
            self.manifest.get("defect_class", "defect") if defect_area >= int(thresholds["min_defect_pixels"]) else good
        )
        # The segmenter's output is the mask (and its per-pixel probability map as heatmap).
        return Prediction(label=label, probabilities=None, anomaly_score=None, heatmap=heatmap, mask=mask)


def available_providers() -> list[str]:
    """ONNX Runtime providers to use, CUDA first when this build and host have it."""
    import onnxruntime as ort

    present = ort.get_available_providers()
    chosen = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in present]
    if "CUDAExecutionProvider" in chosen:
        _preload_cuda_libraries(ort)
    return chosen


_cuda_preloaded = False


def _preload_cuda_libraries(ort: Any) -> None:
    """Load CUDA and cuDNN from the ``nvidia-*`` wheels once per process, so that the CUDA
    provider finds them without ``LD_LIBRARY_PATH`` (onnxruntime-gpu >= 1.21). A host
    without them keeps running on the CPU provider: ONNX Runtime falls back and
    ``OnnxInferencer.providers`` says so."""
    global _cuda_preloaded
    if _cuda_preloaded or not hasattr(ort, "preload_dlls"):
        return
    _cuda_preloaded = True
    try:
        ort.preload_dlls()
    except Exception as error:  # noqa: BLE001 - a missing library must not stop serving on the CPU
        warnings.warn(f"CUDA libraries not preloaded: {error}", RuntimeWarning, stacklevel=2)


class OnnxInferencer(_InferencerBase):
    """ONNX Runtime backend. One session per loaded artifact, reused by every ``predict``.

    ``int8=True`` loads ``model.int8.onnx`` instead of ``model.onnx``. ``intra_op_threads``
    0 lets ONNX Runtime use one thread per physical core. ``allow_spinning`` is off by
    default: measured on the 2-core box shared with the web process and the test suite,
    busy-waiting worker threads doubled the batch-1 latency of the classifier (17 ms vs
    8-10 ms); on an idle box they cut it instead (patch classifier at 320 px, 2 threads:
    ~10.5 against ~16 ms, 2026-12-02). On, by ``LOUPE_INFERENCE_SPIN``, for a dedicated
    inference box whose sessions have more than one thread (with one it changes nothing).
    """

    def __init__(self, *, int8: bool = False, intra_op_threads: int = 0, allow_spinning: bool = False) -> None:
        super().__init__()
        self.int8 = int8
        self.intra_op_threads = intra_op_threads
        self.allow_spinning = allow_spinning
        self._session: Any = None

    def _prepare(self, artifact: VerifiedArtifact) -> None:
        import onnxruntime as ort

        name = self.manifest["onnx"]["int8" if self.int8 else "fp32"]
        if name is None:
            raise ArtifactIntegrityError("this artifact has no INT8 model")
        model_bytes = artifact.load_onnx_bytes(name)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.intra_op_threads:
            options.intra_op_num_threads = self.intra_op_threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.allow_spinning else "0")
        # Bytes, not a path: the runtime has no directory to resolve anything against.
        self._session = ort.InferenceSession(model_bytes, sess_options=options, providers=available_providers())
        self._input_name = self._session.get_inputs()[0].name

    @property
    def providers(self) -> list[str]:
        """The execution providers the loaded session really runs on (ONNX Runtime falls
        back to the CPU when the CUDA provider cannot start)."""
        return list(self._session.get_providers()) if self._session is not None else []

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        outputs: list[np.ndarray] = self._session.run(None, {self._input_name: batch})
        return outputs


class TorchInferencer(_InferencerBase):
    """PyTorch eager backend on CPU, built from the manifest and ``weights.pt``."""

    def __init__(self) -> None:
        super().__init__()
        self._network: Any = None

    def _prepare(self, artifact: VerifiedArtifact) -> None:
        import torch

        from workers.ml.training import build_network

        network = build_network(self.manifest, pretrained=False)
        state = artifact.load_state_dict(self.manifest["weights"])
        bank_name = self.manifest.get("memory_bank")
        if bank_name:
            bank = torch.from_numpy(np.ascontiguousarray(artifact.load_array(bank_name), dtype=np.float32))
            state = {**state, "memory_bank": bank, "bank_sq_norm": (bank * bank).sum(dim=1)}
        try:
            network.load_state_dict(state)
        except RuntimeError as error:
            raise ArtifactIntegrityError(f"weights do not fit the {self.kind} network: {error}") from error
        network.eval()
        self._network = network

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self._network(torch.from_numpy(batch))
        tensors = out if isinstance(out, tuple) else (out,)
        return [tensor.numpy() for tensor in tensors]


def load_inferencer(
    artifact_dir: Path,
    expected_sha256: Mapping[str, str],
    backend: Literal["onnx", "torch"] = "onnx",
    int8: bool = False,
    intra_op_threads: int = 0,
    allow_spinning: bool = False,
) -> Inferencer:
    """Build and ``load`` the inferencer for ``backend``; raise on any integrity problem.
    ``intra_op_threads``: ONNX Runtime threads per session (0: one per physical core);
    ``allow_spinning``: ONNX Runtime's worker threads busy-wait between runs (see
    ``OnnxInferencer``)."""
    inferencer: _InferencerBase
    if backend == "onnx":
        inferencer = OnnxInferencer(int8=int8, intra_op_threads=intra_op_threads, allow_spinning=allow_spinning)
    elif backend == "torch":
        if int8:
            raise ValueError("INT8 is served by the onnx backend only")
        if allow_spinning:
            raise ValueError("allow_spinning is an ONNX Runtime option")
        inferencer = TorchInferencer()
    else:
        raise ValueError(f"unknown backend {backend!r}")
    inferencer.load(Path(artifact_dir), expected_sha256)
    return inferencer
