"""Redeploying safely: a trained version is compared with the serving set on the audited parts
before it serves, and one found worse is not deployed unless a manager insists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from inspection.models import AuditEvent, CalibrationScore, Inspection, ModelVersion, Project
from inspection.services import inspection_run
from inspection.services.model_compare import model_version_compare
from inspection.services.model_versions import model_version_deploy
from inspection.services.routing import calibration_rescore, deployed_label
from review.models import ReviewItem
from review.services import review_decide
from tests.factories import make_project, make_station, make_user, part_jpeg, upload

pytestmark = pytest.mark.django_db

Register = Callable[..., ModelVersion]


def decided_line(project: Project, parts: int) -> None:
    """Parts that came to people whatever their scores (the thresholds decide none yet), decided
    by a person as they are: every third one scratched."""
    station, reviewer = make_station(project), make_user(project)
    scratch = project.defect_classes.get(name="scratch")
    for index in range(parts):
        defective = index % 3 == 0
        posted: Any = APIClient().post(
            "/api/v1/inspections",
            {
                "part_serial": f"L-{index}",
                "image": upload(part_jpeg(seed=index, defect="scratch" if defective else None)),
            },
            format="multipart",
            headers=station.auth,
        )
        assert posted.status_code == 202, posted.content
        inspection_run(inspection_id=posted.json()["id"])
        item = ReviewItem.objects.get(part__serial=f"L-{index}")
        assert item.sampled
        if defective:
            review_decide(item=item, reviewer=reviewer, outcome="fail", defect_class_id=scratch.pk)
        else:
            review_decide(item=item, reviewer=reviewer, outcome="pass")


@pytest.fixture
def project() -> Project:
    project = make_project()
    # Targets a dozen parts can certify (no escape in 7 bounds it under 10 % at 50 %); the
    # thresholds in force decide no part, so every part goes to people until a fit exists.
    Project.objects.filter(pk=project.pk).update(
        auto_pass_threshold=-1.0,
        auto_fail_threshold=2.0,
        audit_rate=0.0,
        target_escape_rate=0.1,
        target_false_reject_rate=0.1,
        calibration_confidence=0.5,
    )
    project.refresh_from_db()
    return project


def test_a_trained_version_is_compared_with_the_serving_set_on_the_same_audited_parts(
    project: Project, register: Register
) -> None:
    serving = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    decided_line(project, 12)
    candidate = register(project, "classifier")  # the same network, trained the same way

    comparison = model_version_compare(version_id=candidate.pk)
    candidate.refresh_from_db()

    assert candidate.comparison == comparison
    assert comparison["serving"] == serving.label and comparison["candidate"] == candidate.label
    assert (comparison["parts"], comparison["defective"]) == (12, 4)
    assert comparison["verdict"] == "same"
    mine, theirs = comparison["candidate_figures"], comparison["serving_figures"]
    for figure in ("review_rate", "escape_rate", "false_reject_rate", "auroc"):
        assert mine[figure] == theirs[figure]
    # Live scores are stored to six places; the candidate's are as computed.
    assert (mine["t_pass"], mine["t_fail"]) == pytest.approx((theirs["t_pass"], theirs["t_fail"]), abs=1e-5)
    assert comparison["target_escape_rate"] == 0.1
    # The serving set's scores were its live ones; the candidate's are kept for its deployment.
    assert CalibrationScore.objects.filter(model_version=candidate.label).count() == 12
    assert AuditEvent.objects.get(action="model.compared").after["verdict"] == "same"
    model_version_deploy(version=candidate)
    assert deployed_label(project=project) == candidate.label
    assert calibration_rescore(project_id=project.pk) == 0  # nothing left to score: fitted at once


def test_a_version_with_nothing_serving_is_measured_on_its_own(project: Project, register: Register) -> None:
    decided_line(project, 6)  # no models yet: a cold start, every part to people
    candidate = register(project, "anomaly")

    comparison = model_version_compare(version_id=candidate.pk)

    assert comparison["verdict"] == "first" and comparison["serving"] is None
    assert comparison["parts"] == 6 and comparison["serving_figures"] is None
    assert 0.0 <= comparison["candidate_figures"]["review_rate"] <= 1.0


def worse(version: ModelVersion, *, against: str) -> None:
    ModelVersion.objects.filter(pk=version.pk).update(
        comparison={
            "status": "done",
            "verdict": "worse",
            "serving": against,
            "candidate": version.label,
            "parts": 480,
            "candidate_figures": {"review_rate": 0.31},
            "serving_figures": {"review_rate": 0.12},
        }
    )


def test_a_version_found_worse_than_what_serves_is_not_deployed_unless_the_manager_insists(
    project: Project, register: Register
) -> None:
    serving = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    candidate = register(project, "classifier")
    worse(candidate, against=serving.label)
    manager = APIClient()
    manager.force_authenticate(make_user(project, role="manager"))

    refused: Any = manager.post(f"/api/v1/model-versions/{candidate.pk}/deploy", {}, format="json")
    still = deployed_label(project=project)
    forced: Any = manager.post(f"/api/v1/model-versions/{candidate.pk}/deploy", {"force": True}, format="json")

    assert refused.status_code == 409 and refused.json()["code"] == "worse_than_serving"
    assert "31.0% of parts to people against 12.0%" in refused.json()["detail"]
    assert "480 audited parts" in refused.json()["detail"]
    assert still == serving.label
    assert forced.status_code == 200 and deployed_label(project=project) == candidate.label
    event = AuditEvent.objects.filter(action="model.deployed").latest("id")
    assert event.after["forced"] is True and event.after["comparison"] == "worse"


def test_a_comparison_made_against_models_no_longer_serving_does_not_block(
    project: Project, register: Register
) -> None:
    first = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    candidate = register(project, "classifier")
    worse(candidate, against=first.label)
    model_version_deploy(version=register(project, "classifier"))  # something else serves now

    model_version_deploy(version=candidate)

    assert deployed_label(project=project) == candidate.label


def test_comparing_is_for_managers_and_for_models_that_route_parts(project: Project, register: Register) -> None:
    candidate, segmenter = register(project, "classifier"), register(project, "segmenter")
    reviewer, manager = APIClient(), APIClient()
    reviewer.force_authenticate(make_user(project, role="reviewer"))
    manager.force_authenticate(make_user(project, role="manager"))
    outsider = APIClient()
    outsider.force_authenticate(make_user(make_project(), role="manager"))

    as_reviewer: Any = reviewer.post(f"/api/v1/model-versions/{candidate.pk}/compare")
    as_outsider: Any = outsider.post(f"/api/v1/model-versions/{candidate.pk}/compare")
    not_routing: Any = manager.post(f"/api/v1/model-versions/{segmenter.pk}/compare")
    queued: Any = manager.post(f"/api/v1/model-versions/{candidate.pk}/compare")

    assert as_reviewer.status_code == 403 and as_outsider.status_code == 404
    assert not_routing.status_code == 400 and not_routing.json()["code"] == "not_a_routing_model"
    assert queued.status_code == 202 and queued.json()["comparison"]["status"] == "running"
    assert Inspection.objects.count() == 0  # nothing scored in the request itself


def test_a_project_that_asks_retrains_each_deployed_model_after_enough_new_labels_one_job_at_a_time(
    project: Project, register: Register
) -> None:
    from inspection.services.model_compare import retraining_start_due

    serving = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    ModelVersion.objects.filter(pk=serving.pk).update(hyperparameters={"epochs": 2, "input_size": [64, 64]})
    decided_line(project, 12)  # twelve review decisions: twelve new human labels
    off = retraining_start_due()
    Project.objects.filter(pk=project.pk).update(retrain_after_labels=13)
    too_few = retraining_start_due()
    Project.objects.filter(pk=project.pk).update(retrain_after_labels=12)

    started = retraining_start_due()
    again = retraining_start_due()

    assert (off, too_few, again) == ([], [], [])  # off by default; 12 < 13; one job at a time
    (version_id,) = started
    version = ModelVersion.objects.get(pk=version_id)
    assert (version.kind, version.status) == ("classifier", "training")
    assert version.hyperparameters == {"epochs": 2, "input_size": [64, 64]}  # the serving one's
    assert len(version.training_data["annotations"]) == 12
    event = AuditEvent.objects.get(action="model.retraining_started")
    assert event.after == {"kind": "classifier", "labels_since": 12, "after_labels": 12}


def better(version: ModelVersion, *, against: str) -> dict[str, Any]:
    comparison = {"status": "done", "verdict": "better", "serving": against, "candidate": version.label, "parts": 500}
    ModelVersion.objects.filter(pk=version.pk).update(comparison=comparison)
    return comparison


def test_a_version_found_better_is_deployed_by_itself_only_where_the_project_asks(
    project: Project, register: Register
) -> None:
    from inspection.services.model_compare import _promote_if_better

    serving = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    candidate = register(project, "classifier")
    not_asked = _promote_if_better(candidate.pk, better(candidate, against=serving.label))
    Project.objects.filter(pk=project.pk).update(promote_when_better=True)
    stale = _promote_if_better(candidate.pk, better(candidate, against="classifier:999"))
    worse_one = register(project, "classifier")
    not_better = _promote_if_better(worse_one.pk, {**better(worse_one, against=serving.label), "verdict": "same"})

    promoted = _promote_if_better(candidate.pk, better(candidate, against=serving.label))

    assert (not_asked, stale, not_better) == (None, None, None)
    assert promoted is not None and deployed_label(project=project) == candidate.label
    event = AuditEvent.objects.filter(action="model.deployed").latest("id")
    assert event.actor_label == "system" and event.after["comparison"] == "better"


def test_a_promotion_that_cannot_deploy_leaves_the_version_ready_and_its_comparison_kept(
    project: Project, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inspection.services.model_compare import model_compare_run

    serving = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    candidate = register(project, "classifier")
    Project.objects.filter(pk=project.pk).update(promote_when_better=True)
    comparison = better(candidate, against=serving.label)
    monkeypatch.setattr("inspection.services.model_compare.model_version_compare", lambda **_: comparison)
    (candidate.artifact_dir / "model.onnx").write_bytes(b"not the model it was")  # fails verification

    result = model_compare_run(version_id=candidate.pk)

    candidate.refresh_from_db()
    assert result == comparison and candidate.comparison == comparison
    assert candidate.status == "ready" and deployed_label(project=project) == serving.label
