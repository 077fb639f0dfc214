"""Deployments and training jobs against the real worker process."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from inspection.models import Inspection, ModelVersion
from inspection.services.datasets import DatasetItem, dataset_import_item
from inspection.services.model_versions import model_version_deploy, training_start
from tests.conftest import LiveStack, pool_children, wait_until
from tests.factories import make_project, make_station, make_user, part_jpeg
from tests.review.test_live_loop import next_event, review_socket, sign_in
from workers.synthetic import synthetic_part

pytestmark = pytest.mark.django_db(transaction=True)


def post(live: LiveStack, station: Any, serial: str) -> int:
    response = requests.post(
        f"{live.base_url}/api/v1/inspections",
        headers=station.auth,
        data={"part_serial": serial},
        files={"image": ("p.jpg", part_jpeg(len(serial)), "image/jpeg")},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def served_by(inspection_id: int) -> str:
    wait_until(lambda: Inspection.objects.get(pk=inspection_id).status == "done", timeout_s=60, what="inference")
    return Inspection.objects.get(pk=inspection_id).model_version


def test_deploying_a_version_switches_what_the_worker_serves_without_a_restart(
    live: LiveStack, register: Callable[..., ModelVersion]
) -> None:
    project = make_project()
    station = make_station(project)
    first = register(project, "anomaly", status=ModelVersion.Status.DEPLOYED)
    second = register(project, "anomaly")
    worker_pid = live.worker.process.pid

    before = served_by(post(live, station, "SW-1"))
    model_version_deploy(version=second)
    after = served_by(post(live, station, "SW-2"))

    assert (before, after) == (first.label, second.label)
    assert live.worker.process.pid == worker_pid and live.worker.process.poll() is None


def labelled_goods(project: Any, directory: Path, count: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        path = directory / f"good{index}.png"
        synthetic_part(500 + index, size=64, defect=None).image.save(path)
        dataset_import_item(project=project, item=DatasetItem(serial=f"G{index}", image_path=path, label=None))
    for index in range(count // 2):
        path = directory / f"bad{index}.png"
        synthetic_part(900 + index, size=64, defect="pit").image.save(path)
        dataset_import_item(project=project, item=DatasetItem(serial=f"B{index}", image_path=path, label="pit"))


def test_a_training_job_killed_midway_leaves_the_deployed_model_serving(
    live: LiveStack, register: Callable[..., ModelVersion], tmp_path: Path
) -> None:
    project = make_project()
    station = make_station(project)
    deployed = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    labelled_goods(project, tmp_path, 12)
    job = training_start(
        project=project,
        kind="classifier",
        # The global head fine-tunes the backbone: epochs long enough to kill one mid-way.
        hyperparameters={"head": "global", "input_size": [64, 64], "epochs": 500, "patience": 500},
    )

    wait_until(lambda: ModelVersion.objects.get(pk=job.pk).progress.get("epoch", 0) >= 1, timeout_s=120, what="epoch 1")
    for pid in pool_children(live.worker.process.pid):
        os.kill(pid, signal.SIGKILL)

    # Redelivered after the kill, the job is marked failed rather than silently restarted.
    wait_until(lambda: ModelVersion.objects.get(pk=job.pk).status == "failed", timeout_s=60, what="job failed")
    job.refresh_from_db()
    assert "stopped before it finished" in job.error
    assert not job.artifact_dir.exists()  # no half-written artifact where a model would be loaded from
    assert ModelVersion.objects.get(pk=deployed.pk).status == "deployed"
    assert served_by(post(live, station, "AFTER-KILL")) == deployed.label


def test_a_manager_watches_training_progress_live_and_cancels_the_job(live: LiveStack, tmp_path: Path) -> None:
    project = make_project()
    labelled_goods(project, tmp_path, 12)
    manager = make_user(project, role="manager")
    session = sign_in(live, manager)

    with review_socket(live, session) as socket:
        assert next_event(socket, "hello")["training"] == [project.pk]
        started = session.post(
            f"{live.base_url}/api/v1/model-versions",
            json={
                "project": project.pk,
                "kind": "classifier",
                "hyperparameters": {"head": "global", "input_size": [64, 64], "epochs": 500, "patience": 500},
            },
            timeout=10,
        )
        assert started.status_code == 202, started.text
        version_id = started.json()["id"]
        progress = next_event(socket, "training.progress", timeout_s=120)
        assert progress["version"] == version_id and progress["epoch"] >= 1 and "loss" in progress
        cancelled = session.post(f"{live.base_url}/api/v1/model-versions/{version_id}/cancel", timeout=10)
        assert cancelled.status_code == 200
        while True:
            event = next_event(socket, "training.progress", timeout_s=60)
            if event["status"] != "training":
                break

    assert event["status"] == "cancelled"
    assert ModelVersion.objects.get(pk=version_id).status == "cancelled"
    detail = session.get(f"{live.base_url}/api/v1/model-versions/{version_id}", timeout=10).json()
    assert detail["progress"]["history"] and json.dumps(detail)  # the curve so far is kept


def test_a_trained_version_is_compared_with_the_serving_set_before_anyone_deploys_it(
    live: LiveStack, register: Callable[..., ModelVersion], tmp_path: Path
) -> None:
    from inspection.models import Project
    from review.models import ReviewItem
    from review.services import review_decide
    from tests.factories import TINY

    project = make_project()
    Project.objects.filter(pk=project.pk).update(auto_pass_threshold=-1.0, auto_fail_threshold=2.0, audit_rate=0.0)
    station, reviewer = make_station(project), make_user(project)
    deployed = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    labelled_goods(project, tmp_path, 12)
    manager = sign_in(live, make_user(project, role="manager"))

    def compared(version_id: int) -> dict[str, Any]:
        wait_until(
            lambda: ModelVersion.objects.get(pk=version_id).comparison.get("status") in {"done", "failed"},
            timeout_s=180,
            what="the comparison on the training worker",
        )
        return dict(ModelVersion.objects.get(pk=version_id).comparison)

    job = training_start(project=project, kind="anomaly", hyperparameters=TINY["anomaly"])
    first = compared(job.pk)  # queued by the training job itself
    for serial in ("LINE-1", "LINE-22", "LINE-333", "LINE-4444"):  # the line since, decided by a person
        served_by(post(live, station, serial))
        review_decide(item=ReviewItem.objects.get(part__serial=serial), reviewer=reviewer, outcome="pass")
    again = manager.post(
        f"{live.base_url}/api/v1/model-versions/{job.pk}/compare", headers={"Referer": live.base_url}, timeout=10
    )
    second = compared(job.pk) if again.status_code == 202 else {}

    assert first["status"] == "done" and first["serving"] == deployed.label
    assert first["candidate"] == f"anomaly:{job.pk},{deployed.label}"
    assert first["parts"] == 0  # every decided part so far was in its training data
    assert again.status_code == 202, again.text
    assert second["status"] == "done" and second["parts"] == 4  # the line's parts; never the training images
    assert ModelVersion.objects.get(pk=deployed.pk).status == "deployed"  # nothing deployed by it
