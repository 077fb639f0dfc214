"""Loading refuses tampered or unsafe artifacts and never reads or runs anything it should not."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from workers.ml.artifacts import sha256_bytes, staging_directory, write_manifest
from workers.ml.errors import ArtifactIntegrityError, UnsafeArtifactError
from workers.ml.inference import OnnxInferencer, TorchInferencer, load_inferencer

from .conftest import Trained


def _hashes(directory: Path) -> dict[str, str]:
    return {p.name: sha256_bytes(p.read_bytes()) for p in directory.iterdir() if p.is_file()}


def _copy_artifact(trained: Trained, target: Path) -> Path:
    shutil.copytree(trained.out_dir, target)
    return target


# Audit hooks cannot be removed, so one process-wide hook records opens only while a
# test has switched recording on.
_OPENED: list[str] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@contextmanager
def recording_opens() -> Iterator[list[str]]:
    """Record the paths of every Python-level file open inside the block."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


def _add_model(external_location: str | None) -> onnx.ModelProto:
    """y = x + w with w (4 floats) stored externally at ``external_location`` if given."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4], np.arange(4, dtype=np.float32).tolist())
    if external_location is not None:
        weight.ClearField("float_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", external_location), ("offset", "0"), ("length", "16")):
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["images", "w"], ["probabilities"])],
        "add",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 4])],
        initializer=[weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _write_tiny_artifact(
    directory: Path, model: onnx.ModelProto, extra: dict[str, bytes] | None = None
) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(model.SerializeToString())
    for name, payload in (extra or {}).items():
        (directory / name).write_bytes(payload)
    manifest = {
        "kind": "classifier",
        "good_class": "good",
        "class_names": ["good", "a", "b", "c"],
        "input_size": [1, 1],
        "thresholds": {"defect_probability": 0.5},
        "weights": "weights.pt",
        "onnx": {"fp32": "model.onnx", "int8": None},
        "architecture": {},
    }
    return write_manifest(directory, manifest)


def test_artifact_with_one_byte_changed_is_refused(trained_classifier: Trained, tmp_path: Path) -> None:
    # given a copy of a good artifact whose ONNX file has one byte flipped
    artifact = _copy_artifact(trained_classifier, tmp_path / "artifact")
    model = artifact / "model.onnx"
    payload = bytearray(model.read_bytes())
    payload[len(payload) // 2] ^= 0x01
    model.write_bytes(bytes(payload))
    # when / then: both backends refuse it with the hashes the caller stored
    backends: tuple[Literal["onnx", "torch"], ...] = ("onnx", "torch")
    for backend in backends:
        with pytest.raises(ArtifactIntegrityError, match=r"sha256 mismatch for 'model\.onnx'"):
            load_inferencer(artifact, trained_classifier.result.artifacts, backend=backend)


def test_tampered_manifest_is_refused_even_with_untouched_model(trained_classifier: Trained, tmp_path: Path) -> None:
    artifact = _copy_artifact(trained_classifier, tmp_path / "artifact")
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["thresholds"]["defect_probability"] = 0.999
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIntegrityError, match=r"manifest\.json"):
        load_inferencer(artifact, trained_classifier.result.artifacts)


def test_expected_hashes_without_the_manifest_are_refused(trained_classifier: Trained) -> None:
    hashes = dict(trained_classifier.result.artifacts)
    del hashes["manifest.json"]
    with pytest.raises(ArtifactIntegrityError, match=r"manifest\.json"):
        load_inferencer(trained_classifier.out_dir, hashes)


def test_file_listed_in_manifest_but_missing_from_expected_hashes_is_refused(trained_classifier: Trained) -> None:
    hashes = dict(trained_classifier.result.artifacts)
    del hashes["weights.pt"]
    with pytest.raises(ArtifactIntegrityError, match=r"weights\.pt"):
        load_inferencer(trained_classifier.out_dir, hashes)


def test_model_with_external_data_inside_its_directory_loads_and_runs(tmp_path: Path) -> None:
    # given a model whose weight lives in a verified file next to it
    hashes = _write_tiny_artifact(
        tmp_path / "a", _add_model("w.bin"), {"w.bin": np.arange(4, dtype=np.float32).tobytes()}
    )
    inferencer = OnnxInferencer()
    inferencer.load(tmp_path / "a", hashes)
    # then the runtime sees the inlined weight
    outputs = inferencer.forward_batch(np.ones((1, 4), dtype=np.float32))
    np.testing.assert_allclose(outputs[0], [[1, 2, 3, 4]])


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("../../etc/passwd", "contains '..'"),
        ("../../secret.bin", "contains '..'"),
        ("/etc/passwd", "is absolute"),
        ("linked.bin", "symlink"),
    ],
)
def test_model_with_external_data_outside_its_directory_is_refused_without_reading_it(
    tmp_path: Path, location: str, message: str
) -> None:
    # given a secret outside the artifact and a model whose external data points at it
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    artifact = tmp_path / "deep" / "artifact"
    hashes = _write_tiny_artifact(artifact, _add_model(location))
    if location == "linked.bin":
        (artifact / "linked.bin").symlink_to(secret)
        hashes["linked.bin"] = sha256_bytes(secret.read_bytes())
    # when
    with recording_opens() as opened, pytest.raises(UnsafeArtifactError, match=message):
        OnnxInferencer().load(artifact, hashes)
    # then no Python-level open touched anything outside the artifact directory
    assert opened, "the audit hook saw no open at all"
    outside = [
        p
        for p in opened
        if not Path(p).resolve().is_relative_to(artifact.resolve())
        and not p.endswith((".py", ".pyc", ".so"))  # lazy imports of library code
    ]
    assert outside == []


def test_artifact_file_that_is_a_hardlink_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    artifact = tmp_path / "artifact"
    hashes = _write_tiny_artifact(artifact, _add_model("w.bin"))
    os.link(secret, artifact / "w.bin")
    hashes["w.bin"] = sha256_bytes(secret.read_bytes())
    with pytest.raises(UnsafeArtifactError, match="hard links"):
        OnnxInferencer().load(artifact, hashes)


class _Payload:
    """Pickling this object makes unpickling call ``open(marker, 'w')``: proof of execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_pickle_with_code_placed_as_weights_is_refused_and_never_runs(
    trained_classifier: Trained, tmp_path: Path
) -> None:
    # given an artifact whose weights.pt is a malicious pickle, with matching hashes
    artifact = _copy_artifact(trained_classifier, tmp_path / "artifact")
    marker = tmp_path / "payload-ran"
    with open(artifact / "weights.pt", "wb") as handle:
        pickle.dump({"_fc.weight": _Payload(marker)}, handle)
    manifest = json.loads((artifact / "manifest.json").read_text())
    for key in ("files", "format"):
        manifest.pop(key)
    hashes = write_manifest(artifact, manifest)
    # when
    with pytest.raises(UnsafeArtifactError, match=r"weights\.pt"):
        TorchInferencer().load(artifact, hashes)
    # then the payload did not run
    assert not marker.exists()
    # and the same file saved by torch.save is refused too
    torch.save({"x": _Payload(marker)}, artifact / "weights.pt")
    hashes = write_manifest(artifact, manifest)
    with pytest.raises(UnsafeArtifactError, match=r"weights\.pt"):
        TorchInferencer().load(artifact, hashes)
    assert not marker.exists()


def test_memory_bank_with_object_dtype_is_refused(trained_knn_anomaly: Trained, tmp_path: Path) -> None:
    artifact = _copy_artifact(trained_knn_anomaly, tmp_path / "artifact")
    marker = tmp_path / "payload-ran"
    np.save(artifact / "memory_bank.npy", np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    manifest = json.loads((artifact / "manifest.json").read_text())
    for key in ("files", "format"):
        manifest.pop(key)
    hashes = write_manifest(artifact, manifest)
    with pytest.raises(UnsafeArtifactError, match=r"memory_bank\.npy"):
        TorchInferencer().load(artifact, hashes)
    assert not marker.exists()


def test_failed_write_leaves_no_output_directory(tmp_path: Path) -> None:
    out_dir = tmp_path / "run"

    def killed_midway() -> None:
        with staging_directory(out_dir) as staging:
            (staging / "model.onnx").write_bytes(b"half")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        killed_midway()
    assert not out_dir.exists()
    assert list(tmp_path.iterdir()) == []
