"""ONNX Runtime and PyTorch serve the same predictions through one interface."""

from __future__ import annotations

import numpy as np
import pytest

from workers.ml.inference import Inferencer, OnnxInferencer, TorchInferencer, load_inferencer

from .conftest import ToySet, Trained


@pytest.mark.parametrize("kind", ["classifier", "anomaly", "segmenter"])
def test_onnx_runtime_and_pytorch_agree(kind: str, request: pytest.FixtureRequest, toy_test: ToySet) -> None:
    trained: Trained = request.getfixturevalue(f"trained_{kind}")
    onnx_backend = load_inferencer(trained.out_dir, trained.result.artifacts, backend="onnx")
    torch_backend = load_inferencer(trained.out_dir, trained.result.artifacts, backend="torch")
    assert isinstance(onnx_backend, OnnxInferencer) and isinstance(torch_backend, TorchInferencer)
    assert isinstance(onnx_backend, Inferencer) and onnx_backend.kind == kind
    images = toy_test.images[::4]
    batch_onnx = onnx_backend.forward_batch(np.stack([i.transpose(2, 0, 1) for i in images]).astype(np.float32))
    batch_torch = torch_backend.forward_batch(np.stack([i.transpose(2, 0, 1) for i in images]).astype(np.float32))
    for a, b in zip(batch_onnx, batch_torch, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    labels_onnx = [p.label for p in onnx_backend.predict(images)]
    labels_torch = [p.label for p in torch_backend.predict(images)]
    assert labels_onnx == labels_torch


def test_predict_accepts_grayscale_and_rgb_of_any_size(trained_segmenter: Trained, toy_test: ToySet) -> None:
    inferencer = load_inferencer(trained_segmenter.out_dir, trained_segmenter.result.artifacts)
    gray = toy_test.images[30][:, :, 0]
    big = np.ascontiguousarray(np.repeat(np.repeat(toy_test.images[30], 2, axis=0), 3, axis=1))
    first, second = inferencer.predict([gray, big])
    assert first.mask is not None and first.mask.shape == gray.shape
    assert second.heatmap is not None and second.heatmap.shape == big.shape[:2]


def test_batched_and_single_predictions_match(trained_anomaly: Trained, toy_test: ToySet) -> None:
    inferencer = load_inferencer(trained_anomaly.out_dir, trained_anomaly.result.artifacts)
    batched = [p.anomaly_score for p in inferencer.predict(toy_test.images[:9])]
    single = [inferencer.predict([image])[0].anomaly_score for image in toy_test.images[:9]]
    np.testing.assert_allclose(batched, single, rtol=1e-4)  # type: ignore[arg-type]


def test_int8_classifier_stays_close_to_fp32(trained_global_classifier: Trained, toy_test: ToySet) -> None:
    trained = trained_global_classifier
    fp32 = load_inferencer(trained.out_dir, trained.result.artifacts)
    int8 = load_inferencer(trained.out_dir, trained.result.artifacts, int8=True)
    agree = np.mean(
        [a.label == b.label for a, b in zip(fp32.predict(toy_test.images), int8.predict(toy_test.images), strict=True)]
    )
    assert agree >= 0.9


def test_predict_before_load_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="load"):
        OnnxInferencer().predict([np.zeros((8, 8), np.uint8)])


def test_onnx_backend_reports_the_providers_its_session_runs_on(trained_classifier: Trained) -> None:
    import onnxruntime as ort

    inferencer = load_inferencer(trained_classifier.out_dir, trained_classifier.result.artifacts)
    assert isinstance(inferencer, OnnxInferencer)

    # The session's own answer, not the build's list: CUDA only where it really started.
    assert inferencer.providers[-1] == "CPUExecutionProvider"
    assert set(inferencer.providers) <= set(ort.get_available_providers())


def test_spinning_threads_are_an_onnx_runtime_switch_that_changes_no_prediction(
    trained_classifier: Trained, toy_test: ToySet
) -> None:
    artifacts = trained_classifier.result.artifacts
    quiet = load_inferencer(trained_classifier.out_dir, artifacts, intra_op_threads=2)
    spinning = load_inferencer(trained_classifier.out_dir, artifacts, intra_op_threads=2, allow_spinning=True)
    assert isinstance(quiet, OnnxInferencer) and isinstance(spinning, OnnxInferencer)
    options = quiet._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spin_options = spinning._session.get_session_options()
    assert spin_options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    a = [p.probabilities for p in quiet.predict(toy_test.images[:8])]
    b = [p.probabilities for p in spinning.predict(toy_test.images[:8])]
    for pa, pb in zip(a, b, strict=True):
        assert pa is not None and pb is not None
        assert pa.keys() == pb.keys()
        np.testing.assert_allclose(list(pa.values()), list(pb.values()), rtol=1e-5, atol=1e-6)

    with pytest.raises(ValueError, match="ONNX Runtime option"):
        load_inferencer(trained_classifier.out_dir, artifacts, backend="torch", allow_spinning=True)
