"""The model registry around the ML engine: train, verify, deploy, serve, and the CLI."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from PIL import Image as PILImage
from rest_framework.test import APIClient

from inspection.errors import Conflict
from inspection.models import AuditEvent, ModelVersion, Project
from inspection.services import inspection_run
from inspection.services.model_versions import model_version_deploy
from tests.factories import TINY, make_project, make_station, make_user, part_jpeg, upload, write_dataset
from workers.synthetic import synthetic_part

pytestmark = pytest.mark.django_db


def run_command(*args: str, stderr: io.StringIO | None = None) -> list[str]:
    out = io.StringIO()
    with redirect_stdout(out):
        call_command(*args, stdout=out, stderr=stderr or io.StringIO())
    return out.getvalue().splitlines()


# --- CLI ---------------------------------------------------------------------------------


def test_import_folder_then_train_yields_a_ready_version_with_hashed_artifacts(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "mtd", goods=10, per_defect=3)

    run_command("import_folder", str(root), "--project", "Tiles", "--good-class", "MT_Free", "--strip-prefix", "MT_")
    errors = io.StringIO()
    lines = run_command(
        "train",
        "--project",
        "Tiles",
        "--kind",
        "anomaly",
        "--hyperparameters",
        json.dumps(TINY["anomaly"]),
        stderr=errors,
    )

    project = Project.objects.get(name="Tiles")
    assert sorted(project.defect_classes.values_list("name", flat=True)) == ["pit", "scratch"]
    assert project.annotations.count() == 16
    assert project.annotations.exclude(shapes=[]).count() == 16  # every image kept its mask
    summary = json.loads(lines[-1])
    version = ModelVersion.objects.get(pk=summary["model_version"])
    assert version.status == "ready" and summary["kind"] == "anomaly"
    # The goods, and the defects whose masks fill the detector's defect bank.
    assert len(version.training_data["annotations"]) == 16
    assert version.metrics["defect_bank_images"] > 0
    assert "image_score" in version.thresholds
    # Ten goods are far too few for a goods-only detector, and the model says so.
    (warning,) = version.metrics["data_warnings"]
    assert "only 9 good parts" in warning and f"warning: {warning}" in errors.getvalue()
    from workers.ml.artifacts import sha256_bytes

    for name, digest in version.artifacts.items():
        assert sha256_bytes((version.artifact_dir / name).read_bytes()) == digest


def test_importing_the_same_folder_twice_adds_nothing(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "mtd", goods=3, per_defect=1)
    run_command("import_folder", str(root), "--project", "Again", "--good-class", "MT_Free")

    lines = run_command("import_folder", str(root), "--project", "Again", "--good-class", "MT_Free")

    assert "imported 0 images, skipped 5" in lines[-1]
    assert Project.objects.get(name="Again").annotations.count() == 5


@pytest.mark.parametrize("kind", ["classifier", "anomaly", "segmenter"])
def test_predict_prints_one_json_line_per_file_with_the_documented_fields(
    kind: str, register: Callable[..., ModelVersion], tmp_path: Path
) -> None:
    version = register(make_project(), kind)
    files = []
    for index in range(2):
        path = tmp_path / f"part{index}.jpg"
        synthetic_part(index, size=64, defect="scratch" if index else None).image.save(path)
        files.append(str(path))

    lines = run_command("predict", "--model", str(version.pk), "--out", str(tmp_path / "out"), *files)

    rows = [json.loads(line) for line in lines]
    assert [row["file"] for row in rows] == files
    for row in rows:
        assert set(row) == {"file", "label", "probabilities", "anomaly_score", "mask", "latency_ms"}
        assert row["latency_ms"] > 0
        assert (row["probabilities"] is not None) == (kind == "classifier")
        assert (row["anomaly_score"] is not None) == (kind == "anomaly")
        # The anomaly detector's heatmap, thresholded, is a mask too.
        assert (row["mask"] is not None) == (kind in {"segmenter", "anomaly"})
        if row["mask"]:
            assert Path(row["mask"]).is_file()


# --- registry ------------------------------------------------------------------------------


def test_a_tampered_artifact_is_never_deployed(register: Callable[..., ModelVersion]) -> None:
    project = make_project()
    serving = register(project, "anomaly", status=ModelVersion.Status.DEPLOYED)
    candidate = register(project, "anomaly")
    onnx = candidate.artifact_dir / "model.onnx"
    payload = bytearray(onnx.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    onnx.write_bytes(bytes(payload))

    with pytest.raises(Conflict, match="failed verification"):
        model_version_deploy(version=candidate)

    assert ModelVersion.objects.get(pk=candidate.pk).status == "ready"
    assert ModelVersion.objects.get(pk=serving.pk).status == "deployed"


def test_deploying_retires_the_previous_version_of_that_kind_only(register: Callable[..., ModelVersion]) -> None:
    project = make_project()
    old_anomaly = register(project, "anomaly", status=ModelVersion.Status.DEPLOYED)
    classifier = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    new_anomaly = register(project, "anomaly")

    model_version_deploy(version=new_anomaly)

    statuses = dict(ModelVersion.objects.values_list("pk", "status"))
    assert statuses == {old_anomaly.pk: "retired", classifier.pk: "deployed", new_anomaly.pk: "deployed"}


@pytest.mark.django_db(transaction=True)
def test_managers_deploying_at_the_same_moment_leave_exactly_one_version_serving(
    register: Callable[..., ModelVersion], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each deploy queues a rescore of the calibration parts (tested on its own elsewhere). Kept
    # off the broker here: a live worker from an earlier test would run it while this
    # transactional test's teardown truncates the tables, and the two can deadlock.
    rescored: list[int] = []
    monkeypatch.setattr("inspection.services.model_versions._enqueue_rescore", rescored.append)
    project = make_project()
    versions = [register(project, "anomaly") for _ in range(4)]
    managers = [make_user(project, role="manager") for _ in versions]
    start = threading.Barrier(len(versions))
    answers: dict[int, int | str] = {}

    def deploy(manager: Any, version: ModelVersion) -> None:
        client = APIClient()
        client.force_authenticate(manager)
        try:
            start.wait()
            answers[version.pk] = client.post(
                f"/api/v1/model-versions/{version.pk}/deploy", {}, format="json"
            ).status_code
        except Exception as exc:  # a 500 surfaces here: the test client re-raises server errors
            answers[version.pk] = type(exc).__name__
        finally:
            connection.close()

    threads = [threading.Thread(target=deploy, args=pair) for pair in zip(managers, versions, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # One after the other: each deploy retires the one before it, and one is left serving.
    assert answers == {version.pk: 200 for version in versions}
    statuses = sorted(ModelVersion.objects.values_list("status", flat=True))
    assert statuses == ["deployed", "retired", "retired", "retired"]
    assert AuditEvent.objects.filter(action="model.deployed").count() == 4
    assert rescored == [project.pk] * 4


def test_a_manager_can_serve_the_int8_model_and_its_parts_are_scored_under_their_own_label(
    register: Callable[..., ModelVersion],
) -> None:
    from inspection import serving

    project = make_project()
    version = register(project, "classifier")
    manager = APIClient()
    manager.force_authenticate(make_user(project, role="manager"))

    answer = manager.post(f"/api/v1/model-versions/{version.pk}/deploy", {"precision": "int8"}, format="json")
    posted: Any = APIClient().post(
        "/api/v1/inspections", {"part_serial": "Q-1", "image": upload(part_jpeg())}, format="multipart",
        headers=make_station(project).auth,
    )  # fmt: skip
    inspection = inspection_run(inspection_id=posted.json()["id"])

    assert answer.status_code == 200 and answer.json()["precision"] == "int8"
    assert inspection is not None and inspection.status == "done"
    # Calibrated apart from the fp32 model: its scores differ a little.
    assert inspection.model_version == f"classifier:{version.pk}/int8"
    loaded = serving.inferencer_for(ModelVersion.objects.get(pk=version.pk))
    assert getattr(loaded, "int8", None) is True
    deployed = AuditEvent.objects.filter(action="model.deployed", object_id=str(version.pk)).get()
    assert deployed.after["precision"] == "int8"


def test_serving_int8_is_refused_with_a_reason_when_the_version_has_none(register: Callable[..., ModelVersion]) -> None:
    project = make_project()
    anomaly = register(project, "anomaly")  # the anomaly detector is not quantized
    manager = APIClient()
    manager.force_authenticate(make_user(project, role="manager"))

    missing = manager.post(f"/api/v1/model-versions/{anomaly.pk}/deploy", {"precision": "int8"}, format="json")
    unknown = manager.post(f"/api/v1/model-versions/{anomaly.pk}/deploy", {"precision": "fp16"}, format="json")

    assert missing.status_code == 400 and missing.json()["code"] == "int8_unavailable"
    assert unknown.status_code == 400
    assert ModelVersion.objects.get(pk=anomaly.pk).status == "ready"


def test_inference_runs_the_deployed_models_and_stores_scores_overlays_and_latency(
    register: Callable[..., ModelVersion],
) -> None:
    project = make_project()
    for kind in ("classifier", "anomaly", "segmenter"):
        register(project, kind, status=ModelVersion.Status.DEPLOYED)
    # Every score goes to a person (a sure model can score exactly 0.0 or 1.0), so the segmenter runs.
    Project.objects.filter(pk=project.pk).update(auto_pass_threshold=-1.0, auto_fail_threshold=2.0)
    station = make_station(project)
    posted: Any = APIClient().post(
        "/api/v1/inspections",
        {"part_serial": "M-1", "image": upload(part_jpeg(5, defect="pit"))},
        format="multipart",
        headers=station.auth,
    )

    inspection = inspection_run(inspection_id=posted.json()["id"])

    assert inspection is not None and inspection.status == "done"
    assert set(inspection.model_version.split(",")) == {
        f"{v.kind}:{v.pk}" for v in ModelVersion.objects.filter(project=project)
    }
    assert {"probabilities", "defect_probability", "anomaly_score", "anomaly_ratio"} <= set(inspection.scores)
    assert {"decode", "classifier", "anomaly", "route"} <= set(inspection.latency_ms)
    assert inspection.heatmap_file
    viewer = APIClient()
    viewer.force_authenticate(make_user(project, role="reviewer"))
    heatmap: Any = viewer.get(f"/api/v1/inspections/{inspection.pk}/heatmap")
    assert heatmap.status_code == 200 and heatmap["Content-Type"] == "image/png"
    # For people: coloured, transparent where the score is low, to lay over the part.
    overlay: Any = viewer.get(f"/api/v1/inspections/{inspection.pk}/heatmap?render=overlay")
    assert overlay.status_code == 200 and overlay["Content-Type"] == "image/png"
    drawn = PILImage.open(io.BytesIO(overlay.content))
    raw = PILImage.open(io.BytesIO(b"".join(heatmap.streaming_content)))
    assert drawn.mode == "RGBA" and drawn.size == raw.size
    assert viewer.get(f"/api/v1/inspections/{inspection.pk}/heatmap?render=svg").status_code == 400


def test_a_patch_head_classifier_alone_stores_where_it_saw_the_defect(register: Callable[..., ModelVersion]) -> None:
    project = make_project()
    classifier = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    assert json.loads((classifier.artifact_dir / "manifest.json").read_text())["architecture"]["head"] == "patch-mlp"
    posted: Any = APIClient().post(
        "/api/v1/inspections",
        {"part_serial": "H-1", "image": upload(part_jpeg(5, defect="pit"))},
        format="multipart",
        headers=make_station(project).auth,
    )

    inspection = inspection_run(inspection_id=posted.json()["id"])

    assert inspection is not None and inspection.status == "done" and inspection.heatmap_file
    viewer = APIClient()
    viewer.force_authenticate(make_user(project, role="reviewer"))
    heatmap: Any = viewer.get(f"/api/v1/inspections/{inspection.pk}/heatmap")
    assert heatmap.status_code == 200 and heatmap["Content-Type"] == "image/png"


@pytest.mark.parametrize(
    ("pass_at", "fail_at", "expected"),
    # Scores lie in [0, 1] and are rounded to 6 places, so a sure model can score exactly 0.0
    # or 1.0: the thresholds sit outside that range to leave no tie.
    [(1.0, 2.0, "pass"), (-1.0, 0.0, "fail"), (-1.0, 2.0, "review")],
    ids=["everything-passes", "everything-fails", "everything-reviewed"],
)
def test_the_project_thresholds_route_the_part(
    register: Callable[..., ModelVersion], pass_at: float, fail_at: float, expected: str
) -> None:
    project = make_project()
    register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    Project.objects.filter(pk=project.pk).update(
        auto_pass_threshold=pass_at, auto_fail_threshold=fail_at, audit_rate=0.0
    )
    station = make_station(project)
    posted: Any = APIClient().post(
        "/api/v1/inspections",
        {"part_serial": "R-1", "image": upload(part_jpeg(9))},
        format="multipart",
        headers=station.auth,
    )

    inspection = inspection_run(inspection_id=posted.json()["id"])

    assert inspection is not None
    verdict = inspection.part.verdicts.filter(is_final=True).first()
    routed = "review" if inspection.part.review_items.exists() else verdict.outcome if verdict else None
    assert routed == expected
    if verdict is not None:
        assert verdict.source == "model" and verdict.model_version == inspection.model_version


def test_serving_a_part_never_reads_the_deployed_models_training_data_or_history(
    register: Callable[..., ModelVersion],
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    project = make_project()
    version = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    # A mature project: every label and image id the model learnt from, and its training curve.
    ModelVersion.objects.filter(pk=version.pk).update(
        training_data={"annotations": list(range(5000)), "images": list(range(5000)), "seed": 0},
        progress={"history": [{"epoch": epoch, "loss": 0.1} for epoch in range(30)]},
    )
    station = make_station(project)
    posted: Any = APIClient().post(
        "/api/v1/inspections", {"part_serial": "SV-1", "image": upload(part_jpeg(3))}, format="multipart",
        headers=station.auth,
    )  # fmt: skip

    with CaptureQueriesContext(connection) as queries:
        inspection = inspection_run(inspection_id=posted.json()["id"])

    assert inspection is not None and inspection.status == "done"
    heavy = [q["sql"] for q in queries.captured_queries if any(f in q["sql"] for f in ("training_data", "progress"))]
    assert heavy == []


def test_a_model_that_cannot_load_sends_the_part_to_a_person(register: Callable[..., ModelVersion]) -> None:
    project = make_project()
    version = register(project, "anomaly", status=ModelVersion.Status.DEPLOYED)
    (version.artifact_dir / "manifest.json").write_text("{}")  # changed after deployment
    station = make_station(project)
    posted: Any = APIClient().post(
        "/api/v1/inspections",
        {"part_serial": "E-1", "image": upload(part_jpeg(1))},
        format="multipart",
        headers=station.auth,
    )

    inspection = inspection_run(inspection_id=posted.json()["id"])

    assert inspection is not None and "ArtifactIntegrityError" in inspection.error
    assert inspection.part.review_items.get().reason == "model_error"
    assert not inspection.part.verdicts.exists()


# --- API -----------------------------------------------------------------------------------


def test_only_managers_of_the_project_start_training_through_the_api(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", goods=9, per_defect=1)
    run_command("import_folder", str(root), "--project", "Api", "--good-class", "MT_Free")
    project = Project.objects.get(name="Api")
    body = {"project": project.pk, "kind": "anomaly", "hyperparameters": {"bank_size": 500}}

    as_reviewer, as_manager, as_stranger = APIClient(), APIClient(), APIClient()
    as_reviewer.force_authenticate(make_user(project, role="reviewer"))
    as_manager.force_authenticate(make_user(project, role="manager"))
    as_stranger.force_authenticate(make_user(make_project(), role="manager"))

    assert as_reviewer.post("/api/v1/model-versions", body, format="json").status_code == 403
    assert as_stranger.post("/api/v1/model-versions", body, format="json").status_code == 404
    started: Any = as_manager.post("/api/v1/model-versions", body, format="json")
    assert started.status_code == 202 and started.json()["status"] == "training"
    bad: Any = as_manager.post("/api/v1/model-versions", {**body, "hyperparameters": {"__class__": 1}}, format="json")
    assert bad.status_code == 400
    sideways: Any = as_manager.post(
        "/api/v1/model-versions", {**body, "kind": "classifier", "hyperparameters": {"head": "sideways"}}, format="json"
    )
    assert sideways.status_code == 400 and "head must be" in sideways.text
    assert ModelVersion.objects.count() == 1


@pytest.mark.parametrize(
    ("kind", "hyperparameters", "reason"),
    [
        ("anomaly", {"epochs": 5}, "unknown hyperparameters for anomaly: ['epochs']"),
        ("classifier", {"epochs": "ten"}, "epochs must be a number"),
        ("classifier", {"epochs": 0}, "epochs must be at least 1"),
        ("segmenter", {"learning_rate": -0.1}, "learning_rate must be a finite number, not negative"),
        ("classifier", {"val_fraction": 1.5}, "val_fraction must lie between 0 and 1"),
        ("classifier", {"int8": "yes"}, "int8 must be true or false"),
        ("segmenter", {"input_size": [100, 100]}, "input_size must be multiples of 32"),
        ("anomaly", {"taps": [99]}, "taps must name Lite0 blocks"),
    ],
)
def test_bad_hyperparameters_are_a_400_before_a_job_is_queued(
    tmp_path: Path, kind: str, hyperparameters: dict[str, Any], reason: str
) -> None:
    root = write_dataset(tmp_path / "d", goods=9, per_defect=1)
    run_command("import_folder", str(root), "--project", "Hp", "--good-class", "MT_Free")
    project = Project.objects.get(name="Hp")
    manager = APIClient()
    manager.force_authenticate(make_user(project, role="manager"))

    response: Any = manager.post(
        "/api/v1/model-versions",
        {"project": project.pk, "kind": kind, "hyperparameters": hyperparameters},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["code"] == "bad_hyperparameters"
    assert reason in response.json()["detail"]
    assert not ModelVersion.objects.exists()


def test_training_with_too_few_labels_is_refused_with_a_reason() -> None:
    project = make_project()
    manager = APIClient()
    manager.force_authenticate(make_user(project, role="manager"))

    response: Any = manager.post("/api/v1/model-versions", {"project": project.pk, "kind": "classifier"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "not_enough_labels"
    assert not ModelVersion.objects.exists()


def test_a_started_job_that_stopped_checking_in_is_failed_and_a_queued_one_is_left_waiting() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from inspection.services.model_versions import trainings_fail_stalled

    project = make_project()
    long_ago, just_now = timezone.now() - timedelta(minutes=20), timezone.now() - timedelta(seconds=30)
    dead = ModelVersion.objects.create(project=project, kind="anomaly", attempts=1, heartbeat_at=long_ago)
    alive = ModelVersion.objects.create(project=project, kind="anomaly", attempts=1, heartbeat_at=just_now)
    queued = ModelVersion.objects.create(project=project, kind="anomaly", attempts=0)

    failed = trainings_fail_stalled()
    again = trainings_fail_stalled()

    assert (failed, again) == ([dead.pk], [])
    statuses = dict(ModelVersion.objects.values_list("pk", "status"))
    assert statuses == {dead.pk: "failed", alive.pk: "training", queued.pk: "training"}
    assert "worker running this job stopped" in ModelVersion.objects.get(pk=dead.pk).error


def test_a_running_job_beats_from_its_stop_checks_so_a_long_epoch_is_not_taken_for_a_dead_worker() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from inspection.services.model_versions import training_stop_check, trainings_fail_stalled

    project = make_project()
    long_ago = timezone.now() - timedelta(minutes=20)
    job = ModelVersion.objects.create(project=project, kind="anomaly", attempts=1, heartbeat_at=long_ago)
    now = [1000.0]
    should_stop = training_stop_check(job.pk, clock=lambda: now[0])

    assert should_stop() is False  # checked, but under a minute since the run began: no write
    assert ModelVersion.objects.get(pk=job.pk).heartbeat_at == long_ago
    now[0] += 61.0  # a minute into one long epoch, no progress report in between
    assert should_stop() is False
    beat = ModelVersion.objects.get(pk=job.pk).heartbeat_at
    assert beat is not None and beat > long_ago
    assert trainings_fail_stalled() == []  # alive, though its last epoch report is 20 minutes old

    ModelVersion.objects.filter(pk=job.pk).update(cancel_requested=True)
    now[0] += 1.0  # checks are at most every two seconds
    assert should_stop() is False
    now[0] += 1.0
    assert should_stop() is True


def test_train_with_deploy_compares_first_and_refuses_a_worse_version_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core.management.base import CommandError

    from inspection.services.routing import deployed_label

    root = write_dataset(tmp_path / "mtd", goods=10, per_defect=3)
    run_command("import_folder", str(root), "--project", "Tiles", "--good-class", "MT_Free", "--strip-prefix", "MT_")
    train = ["train", "--project", "Tiles", "--kind", "anomaly", "--hyperparameters", json.dumps(TINY["anomaly"])]
    first = run_command(*train, "--deploy")
    project = Project.objects.get(name="Tiles")
    serving = deployed_label(project=project)

    def worse(*, version_id: int, **_: Any) -> dict[str, Any]:
        figures = {"review_rate": 0.4}
        comparison = {"verdict": "worse", "serving": serving, "parts": 500, "candidate_figures": figures,
                      "serving_figures": {"review_rate": 0.1}}  # fmt: skip
        ModelVersion.objects.filter(pk=version_id).update(comparison=comparison)
        return comparison

    monkeypatch.setattr("inspection.services.model_compare.model_version_compare", worse)
    with pytest.raises(CommandError, match=r"not deployed: .* 40\.0% of parts to people against 10\.0%"):
        run_command(*train, "--deploy")
    still = deployed_label(project=project)
    forced = run_command(*train, "--deploy", "--force")

    # Nothing served before the first: it was measured alone (no audited parts it did not learn from).
    assert any(line.startswith("comparison: first on 0 parts") for line in first)
    assert still == serving
    assert any(
        line.startswith("comparison: worse on 500 parts: 40.0% of parts to people against 10.0%") for line in forced
    )
    assert deployed_label(project=project) == f"anomaly:{json.loads(forced[-1])['model_version']}"
