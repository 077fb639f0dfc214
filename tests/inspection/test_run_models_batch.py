"""On a GPU the deployed models run once over a batch of images (one forward pass per model),
with the same scores as one image at a time, and one bad image costs only its own part. CI has
no GPU: these tests make the batch path run on the CPU."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from inspection import serving
from inspection.models import Inspection, ModelVersion, Project
from inspection.services import model_runs as model_runs_service
from inspection.services.model_runs import run_models, run_models_many
from tests.factories import make_project, make_station, part_jpeg, upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def forward_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a GPU host: one forward pass per model for the whole batch."""
    monkeypatch.setattr(model_runs_service, "_forward_together", lambda deployed: True)


def posted_with_every_model(register: Callable[..., ModelVersion], parts: int = 5) -> tuple[list[Inspection], Any]:
    project = make_project()
    for kind in ("classifier", "anomaly", "segmenter"):
        register(project, kind, status=ModelVersion.Status.DEPLOYED)
    station = make_station(project)
    ids = []
    for index in range(parts):
        defect = None if index % 2 else "scratch"
        posted: Any = APIClient().post(
            "/api/v1/inspections", {"part_serial": f"M-{index}", "image": upload(part_jpeg(index, defect=defect))},
            format="multipart", headers=station.auth,
        )  # fmt: skip
        ids.append(posted.json()["id"])
    project = Project.objects.get(pk=project.pk)
    inspections = list(Inspection.objects.select_related("image", "project").filter(pk__in=ids).order_by("pk"))
    return inspections, serving.deployed_versions(project_id=project.pk)


def comparable(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scores.items() if k not in {"probabilities"}}


def test_a_batch_scores_every_image_as_one_at_a_time_would(register: Callable[..., ModelVersion]) -> None:
    inspections, deployed = posted_with_every_model(register)

    batched = run_models_many(inspections=inspections, deployed=deployed, save_overlays=False)
    single = [run_models(inspection=i, deployed=deployed, save_overlays=False) for i in inspections]

    for together, alone in zip(batched, single, strict=True):
        assert together.error == alone.error == ""
        assert together.scores.keys() == alone.scores.keys()
        assert together.scores["defect_score"] == pytest.approx(alone.scores["defect_score"], abs=1e-4)
        assert together.scores["anomaly_score"] == pytest.approx(alone.scores["anomaly_score"], rel=1e-4)
        assert together.scores.get("defect_pixels") == pytest.approx(alone.scores.get("defect_pixels"), abs=2)
        assert (together.scores["classifier_flag"], together.scores["anomaly_flag"]) == (
            alone.scores["classifier_flag"],
            alone.scores["anomaly_flag"],
        )
        assert together.defect_class == alone.defect_class
        assert set(together.latency_ms) >= {"decode", "classifier", "anomaly"}


def test_an_unreadable_image_sends_only_its_own_part_to_a_person(register: Callable[..., ModelVersion]) -> None:
    inspections, deployed = posted_with_every_model(register)
    default_storage.delete(inspections[2].image.file)

    runs = run_models_many(inspections=inspections, deployed=deployed, save_overlays=False)

    assert runs[2].error and runs[2].defect_score is None and "defect_score" not in runs[2].scores
    assert [bool(run.error) for run in runs] == [False, False, True, False, False]
    assert all(run.scores.get("defect_score") is not None for index, run in enumerate(runs) if index != 2)


def test_a_model_that_fails_on_the_batch_is_retried_image_by_image(
    register: Callable[..., ModelVersion], monkeypatch: pytest.MonkeyPatch
) -> None:
    inspections, deployed = posted_with_every_model(register)
    real = serving.inferencer_for

    class OneAtATime:
        """An inferencer that cannot take batches (say, out of GPU memory)."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def predict(self, images: list[Any]) -> Any:
            if len(images) > 1:
                raise RuntimeError("batch too large for this device")
            return self.inner.predict(images)

    monkeypatch.setattr(serving, "inferencer_for", lambda version: OneAtATime(real(version)))

    runs = run_models_many(inspections=inspections, deployed=deployed, save_overlays=False)

    assert [run.error for run in runs] == [""] * len(inspections)
    assert all(run.scores["defect_score"] is not None for run in runs)


def test_on_the_cpu_images_run_one_at_a_time(
    register: Callable[..., ModelVersion], monkeypatch: pytest.MonkeyPatch
) -> None:
    inspections, deployed = posted_with_every_model(register, parts=3)
    monkeypatch.undo()  # the real check: these toy models serve on ONNX Runtime's CPU provider
    sizes: list[int] = []
    real = serving.inferencer_for

    class Recording:
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.providers = getattr(inner, "providers", [])

        def predict(self, images: list[Any]) -> Any:
            sizes.append(len(images))
            return self.inner.predict(images)

    monkeypatch.setattr(serving, "inferencer_for", lambda version: Recording(real(version)))

    runs = run_models_many(inspections=inspections, deployed=deployed, save_overlays=False)

    assert all(run.scores["defect_score"] is not None for run in runs)
    assert sizes and set(sizes) == {1}
