"""Routing decisions: sure parts are decided by the models, doubtful ones go to people."""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from inspection.models import AuditEvent, Calibration, Image, Inspection, ModelVersion, Part, Project, Verdict
from inspection.services.routing import (
    Decision,
    audit_draw,
    calibration_run,
    decide_part,
    decide_view,
    deployed_label,
    sample_draw,
    thresholds_for,
)
from inspection.services.verdicts import _route_part
from review.models import ReviewItem
from tests.factories import make_project, make_station, make_user
from workers.routing.calibration import calibrate

pytestmark = pytest.mark.django_db


def scores(
    defect: float, *, classifier: bool | None = None, anomaly: bool | None = None, ratio: float | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {"defect_score": defect, "predicted_class": "scratch"}
    if classifier is not None:
        row["classifier_flag"] = classifier
    if anomaly is not None:
        row["anomaly_flag"] = anomaly
    if ratio is not None:
        row["anomaly_ratio"] = ratio
    return row


@pytest.mark.parametrize(
    ("view", "error", "expected"),
    [
        (scores(0.01), "", Decision("pass")),
        (scores(0.99), "", Decision("fail", defect_class="scratch")),
        (scores(0.50), "", Decision("review", "uncertain")),
        (scores(0.01, classifier=False, anomaly=True, ratio=1.5), "", Decision("review", "disagreement")),
        (scores(0.99, classifier=True, anomaly=False, ratio=0.5), "", Decision("review", "disagreement")),
        (scores(0.01, classifier=False, anomaly=True, ratio=9.0), "", Decision("review", "out_of_distribution")),
        (scores(0.01, classifier=False, anomaly=False, ratio=0.2), "", Decision("pass")),
        ({}, "ArtifactIntegrityError: changed", Decision("review", "model_error")),
    ],
    ids=[
        "sure-good",
        "sure-bad",
        "unsure",
        "anomaly-only",
        "classifier-only",
        "far-from-training",
        "agree-good",
        "error",
    ],
)
def test_each_view_is_decided_by_the_thresholds_and_the_models_agreement(
    view: dict[str, Any], error: str, expected: Decision
) -> None:
    project = make_project()

    assert decide_view(project=project, scores=view, t_pass=0.1, t_fail=0.9, error=error) == expected


@pytest.mark.parametrize(
    ("views", "expected"),
    [
        ([Decision("pass"), Decision("pass")], Decision("pass")),
        ([Decision("pass"), Decision("fail", defect_class="pit")], Decision("fail", defect_class="pit")),
        ([Decision("review", "uncertain"), Decision("pass")], Decision("review", "uncertain")),
        ([Decision("review", "uncertain"), Decision("fail", defect_class="pit")], Decision("fail", defect_class="pit")),
    ],
    ids=["all-pass", "one-view-fails", "one-view-doubtful", "fail-beats-doubt"],
)
def test_a_part_with_several_views_fails_if_any_view_fails(views: list[Decision], expected: Decision) -> None:
    assert decide_part(views) == expected


def test_the_sample_draws_about_the_audit_rate_of_all_parts_and_audits_the_automatic_decisions_drawn() -> None:
    project = make_project()
    project.audit_rate = 0.05
    rng = random.Random(1)

    drawn = [sample_draw(project=project, rng=rng) for _ in range(20_000)]

    assert 0.04 < drawn.count(True) / 20_000 < 0.06
    assert audit_draw(decision=Decision("pass"), sampled=True).reason == "audit_sample"
    assert audit_draw(decision=Decision("fail", defect_class="crack"), sampled=True).reason == "audit_sample"
    assert audit_draw(decision=Decision("pass"), sampled=False) == Decision("pass")
    assert audit_draw(decision=Decision("review", "uncertain"), sampled=True).reason == "uncertain"


def scored_view(project: Project, part: Part, decision: Decision, model_version: str, index: int) -> Inspection:
    station = make_station(project).station
    image = Image.objects.create(
        sha256=hashlib.sha256(f"view-{part.pk}-{index}".encode()).hexdigest(),
        file="x.png",
        format="PNG",
        width=1,
        height=1,
        bytes=1,
    )
    return Inspection.objects.create(
        project=project, part=part, station=station, image=image, captured_at=timezone.now(),
        status=Inspection.Status.DONE, model_version=model_version, scores={"decision": decision.as_dict()},
    )  # fmt: skip


def test_a_multi_camera_part_waits_for_all_views_then_fails_if_one_view_fails() -> None:
    project = make_project()
    Project.objects.filter(pk=project.pk).update(views_per_part=2, audit_rate=0.0)
    project.refresh_from_db()
    part = Part.objects.create(project=project, serial="MV-1")

    first = scored_view(project, part, Decision("pass"), "classifier:1", 0)
    _route_part(first, deployed=True, model_version="classifier:1")
    waiting = (part.verdicts.exists(), part.review_items.exists())
    second = scored_view(project, part, Decision("fail", defect_class="crack"), "classifier:1", 1)
    _route_part(second, deployed=True, model_version="classifier:1")

    assert waiting == (False, False)
    verdict = part.verdicts.get(is_final=True)
    assert (verdict.outcome, verdict.defect_class.name if verdict.defect_class else None) == ("fail", "crack")


def test_an_audited_automatic_decision_goes_to_a_person_and_remembers_what_the_model_said() -> None:
    project = make_project()
    Project.objects.filter(pk=project.pk).update(audit_rate=1.0)
    project.refresh_from_db()
    part = Part.objects.create(project=project, serial="AU-1")

    _route_part(
        scored_view(project, part, Decision("pass"), "classifier:1", 0), deployed=True, model_version="classifier:1"
    )

    item = part.review_items.get()
    assert (item.reason, item.model_decision) == ("audit_sample", "pass")
    assert not part.verdicts.exists()


def calibration_history(
    project: Project, model_version: str, n: int, seed: int = 0, *, serial: str = "C", sure: bool = False
) -> list[int]:
    """n parts the deployed set scored and a person then decided; returns their image ids.
    ``sure``: scored as a model scores the images it trained on (goods near 0, defects near 1)."""
    rng = np.random.default_rng(seed)
    reviewer = make_user(project)
    station = make_station(project).station
    image_ids = []
    for index in range(n):
        defective = bool(rng.random() < 0.1)
        if sure:
            score = float(rng.uniform(0.95, 1.0) if defective else rng.uniform(0.0, 0.05))
        else:
            score = float(rng.beta(8, 2) if defective else rng.beta(2, 8))
        part = Part.objects.create(project=project, serial=f"{serial}-{index}")
        image = Image.objects.create(
            sha256=hashlib.sha256(f"cal-{project.pk}-{serial}-{index}".encode()).hexdigest(),
            file="x",
            format="PNG",
            width=1,
            height=1,
            bytes=1,
        )
        Inspection.objects.create(
            project=project, part=part, station=station, image=image, captured_at=timezone.now(), status="done",
            model_version=model_version, scores={"defect_score": score},
        )  # fmt: skip
        Verdict.objects.create(
            project=project, part=part, outcome="fail" if defective else "pass", source="human", decided_by=reviewer
        )
        image_ids.append(image.pk)
    return image_ids


def test_calibration_on_human_labelled_parts_sets_the_thresholds_routing_uses() -> None:
    project = make_project()
    calibration_history(project, "classifier:7", 3000)

    calibration = calibration_run(project=project, model_version="classifier:7")
    t_pass, t_fail, used = thresholds_for(project=project, model_version="classifier:7")

    assert used == calibration and (t_pass, t_fail) == (calibration.t_pass, calibration.t_fail)
    assert calibration.parts == 3000
    assert 0 <= calibration.t_pass < calibration.t_fail <= 1
    assert calibration.escape_rate <= project.target_escape_rate
    assert [point["target_escape"] for point in calibration.curve] == sorted(
        point["target_escape"] for point in calibration.curve
    )
    assert AuditEvent.objects.filter(action="routing.calibrated").count() == 1


def test_calibration_leaves_out_the_parts_the_deployed_models_trained_on() -> None:
    # Decided parts feed the training pool; the next model scores its own training images
    # with confidence it will not have on new parts, so those must not set its thresholds.
    project, unseen_only = make_project(), make_project()
    seen = calibration_history(project, "classifier:0", 2000, seed=1, serial="T", sure=True)
    version = ModelVersion.objects.create(
        project=project, kind="classifier", status=ModelVersion.Status.DEPLOYED, training_data={"images": seen}
    )
    label = deployed_label(project=project)
    Inspection.objects.filter(image_id__in=seen).update(model_version=label)
    calibration_history(project, label, 1500, seed=2)
    calibration_history(unseen_only, label, 1500, seed=2)

    calibration = calibration_run(project=project, model_version=label)
    expected = calibration_run(project=unseen_only, model_version=label)

    assert label == version.label and calibration.parts == 1500
    assert (calibration.t_pass, calibration.t_fail) == (expected.t_pass, expected.t_fail)
    # With the training images counted, 3,500 parts would certify a looser auto-pass.
    everything = calibrate(
        np.array(list(Inspection.objects.filter(project=project).values_list("scores__defect_score", flat=True))),
        np.array(
            [
                outcome == "fail"
                for outcome in Inspection.objects.filter(project=project).values_list(
                    "part__verdicts__outcome", flat=True
                )
            ]
        ),
        target_escape=project.target_escape_rate,
        target_false_reject=project.target_false_reject_rate,
        delta=1 - project.calibration_confidence,
    )
    assert everything.t_pass > calibration.t_pass


def test_a_manager_sees_the_trade_off_and_moving_the_operating_point_is_audited_and_refits(register: Any) -> None:
    project = make_project()
    version = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    label = deployed_label(project=project)
    assert label == version.label
    calibration_history(project, label, 2000)
    manager = APIClient()
    manager.force_authenticate(make_user(project, role="manager"))

    changed: Any = manager.patch(f"/api/v1/projects/{project.pk}", {"target_escape_rate": 0.02}, format="json")
    routing: Any = manager.get(f"/api/v1/projects/{project.pk}/routing")

    assert changed.status_code == 200
    body = routing.json()
    assert body["operating_point"]["target_escape_rate"] == 0.02
    assert body["calibration"]["target_escape_rate"] == 0.02 and body["calibration"]["model_version"] == label
    assert len(body["calibration"]["curve"]) >= 3
    event = AuditEvent.objects.get(action="project.updated")
    assert (event.before, event.after) == ({"target_escape_rate": 0.005}, {"target_escape_rate": 0.02})
    assert Calibration.objects.filter(project=project).count() == 1


def test_only_managers_move_the_operating_point() -> None:
    project = make_project()
    reviewer = APIClient()
    reviewer.force_authenticate(make_user(project, role="reviewer"))

    response = reviewer.patch(f"/api/v1/projects/{project.pk}", {"target_escape_rate": 0.5}, format="json")

    assert response.status_code == 403
    assert Project.objects.get(pk=project.pk).target_escape_rate == 0.005


def test_review_items_record_why_they_were_routed() -> None:
    assert {"cold_start", "uncertain", "model_error", "disagreement", "out_of_distribution", "audit_sample"} <= set(
        ReviewItem.Reason.values
    )


def test_a_newly_deployed_model_is_calibrated_at_once_on_the_parts_people_already_decided(register: Any) -> None:
    from inspection.models import CalibrationScore
    from inspection.services import inspection_run
    from inspection.services.model_versions import model_version_deploy
    from inspection.services.routing import calibration_rescore
    from review.services import review_decide
    from tests.factories import part_jpeg, upload

    project = make_project()
    # The first model is unsure of everything: every part goes to a person, who decides it.
    Project.objects.filter(pk=project.pk).update(auto_pass_threshold=-1.0, auto_fail_threshold=2.0, audit_rate=0.0)
    first = register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    station, reviewer = make_station(project), make_user(project)
    crack = project.defect_classes.get(name="crack")
    for index in range(6):
        posted: Any = APIClient().post(
            "/api/v1/inspections", {"part_serial": f"CAL-{index}", "image": upload(part_jpeg(seed=index))},
            format="multipart", headers=station.auth,
        )  # fmt: skip
        inspection_run(inspection_id=posted.json()["id"])
        item = ReviewItem.objects.get(part__serial=f"CAL-{index}")
        if index % 2:
            review_decide(item=item, reviewer=reviewer, outcome="fail", defect_class_id=crack.pk)
        else:
            review_decide(item=item, reviewer=reviewer, outcome="pass")
    overlays = sorted(Inspection.objects.values_list("heatmap_file", "mask_file"))

    second = register(project, "classifier")
    # It learned from one of those parts: that one cannot calibrate it.
    learned_from = Inspection.objects.get(part__serial="CAL-0").image_id
    ModelVersion.objects.filter(pk=second.pk).update(training_data={"images": [learned_from]})
    model_version_deploy(version=second, precision="int8")
    scored = calibration_rescore(project_id=project.pk)
    again = calibration_rescore(project_id=project.pk)

    label = f"classifier:{second.pk}/int8"
    assert deployed_label(project=project) == label and first.label != second.label
    assert (scored, again) == (5, 0)  # every decided part it did not learn from, once
    assert CalibrationScore.objects.filter(model_version=label).count() == 5
    calibration = Calibration.objects.filter(project=project, model_version=label).first()
    assert calibration is not None and calibration.parts == 5
    # Scoring for calibration leaves what the first model drew on those parts as it was.
    assert sorted(Inspection.objects.values_list("heatmap_file", "mask_file")) == overlays


@pytest.mark.parametrize(
    "decision",
    [Decision("pass"), Decision("fail", defect_class="crack"), Decision("review", "uncertain")],
    ids=["models-would-pass", "models-would-fail", "models-unsure"],
)
def test_a_part_a_person_decided_first_keeps_that_verdict_when_the_models_finish(decision: Decision) -> None:
    project = make_project()
    Project.objects.filter(pk=project.pk).update(audit_rate=0.0)
    project.refresh_from_db()
    part = Part.objects.create(project=project, serial="FAST-1")
    person = Verdict.objects.create(
        project=project, part=part, outcome="pass", source="human", decided_by=make_user(project)
    )

    _route_part(scored_view(project, part, decision, "classifier:1", 0), deployed=True, model_version="classifier:1")

    assert list(part.verdicts.values_list("pk", flat=True)) == [person.pk]
    assert not part.review_items.exists()
    assert not AuditEvent.objects.filter(action="verdict.recorded").exists()


def test_a_second_final_verdict_is_a_conflict_that_leaves_the_callers_transaction_usable() -> None:
    from django.db import transaction

    from inspection.errors import Conflict
    from inspection.services import verdict_record_final

    project = make_project()
    part = Part.objects.create(project=project, serial="TWICE-1")
    first = verdict_record_final(part=part, outcome="pass", source="model")

    with transaction.atomic():
        with pytest.raises(Conflict) as refused:
            verdict_record_final(part=part, outcome="fail", source="model")
        still_usable = Verdict.objects.filter(part=part).count()

    assert refused.value.code == "already_decided"
    assert still_usable == 1
    assert list(part.verdicts.values_list("pk", "outcome")) == [(first.pk, "pass")]


def test_with_classifier_and_anomaly_detector_deployed_routing_scores_their_mean(register: Any) -> None:
    from inspection import serving
    from inspection.services.model_runs import run_models
    from tests.factories import part_jpeg, upload

    project = make_project()
    for kind in ("classifier", "anomaly"):
        register(project, kind, status=ModelVersion.Status.DEPLOYED)
    station = make_station(project)
    posted: Any = APIClient().post(
        "/api/v1/inspections", {"part_serial": "MEAN-1", "image": upload(part_jpeg(3, defect="scratch"))},
        format="multipart", headers=station.auth,
    )  # fmt: skip
    inspection = Inspection.objects.select_related("image", "project").get(pk=posted.json()["id"])

    run = run_models(inspection=inspection, deployed=serving.deployed_versions(project_id=project.pk))

    p_defect, ratio = run.scores["defect_probability"], run.scores["anomaly_ratio"]
    assert run.scores["defect_score"] == pytest.approx((p_defect + min(1.0, ratio / 2)) / 2, abs=1e-5)


def test_a_rescoring_stopped_by_its_time_limit_keeps_its_scores_and_the_next_run_finishes(
    register: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    from inspection.models import CalibrationScore
    from inspection.services import inspection_run, model_runs, routing
    from inspection.services.model_versions import model_version_deploy
    from review.services import review_decide
    from tests.factories import part_jpeg, upload

    project = make_project()
    Project.objects.filter(pk=project.pk).update(auto_pass_threshold=-1.0, auto_fail_threshold=2.0, audit_rate=0.0)
    register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    station, reviewer = make_station(project), make_user(project)
    for index in range(5):
        posted: Any = APIClient().post(
            "/api/v1/inspections", {"part_serial": f"TL-{index}", "image": upload(part_jpeg(seed=index))},
            format="multipart", headers=station.auth,
        )  # fmt: skip
        inspection_run(inspection_id=posted.json()["id"])
        review_decide(item=ReviewItem.objects.get(part__serial=f"TL-{index}"), reviewer=reviewer, outcome="pass")
    model_version_deploy(version=register(project, "classifier"))
    label = deployed_label(project=project)

    real_run, calls = model_runs.run_models, []

    def out_of_time_at_the_fourth(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 4:
            raise SoftTimeLimitExceeded()
        return real_run(**kwargs)

    monkeypatch.setattr(routing, "RESCORE_SAVE_EVERY", 2)
    monkeypatch.setattr(model_runs, "run_models", out_of_time_at_the_fourth)
    with pytest.raises(SoftTimeLimitExceeded):
        routing.calibration_rescore(project_id=project.pk)
    kept = CalibrationScore.objects.filter(model_version=label).count()
    monkeypatch.setattr(model_runs, "run_models", real_run)
    rest = routing.calibration_rescore(project_id=project.pk)

    assert kept == 2  # the first batch was written before time ran out
    assert rest == 3 and CalibrationScore.objects.filter(model_version=label).count() == 5


# --- the fair sample: what the thresholds are fitted on ------------------------------------


@pytest.mark.parametrize(
    ("t_pass", "t_fail", "untrained", "view_calibrated", "held"),
    [
        (0.2, 0.8, False, False, ""),  # the project's thresholds decide parts: each part on its scores
        (-1.0, 2.0, False, False, "project"),  # they decide none: every part to people
        (-1.0, 2.0, True, True, "station"),  # a station's own thresholds decide none
        (0.2, 0.8, True, False, "station"),  # a view the models never learnt, not calibrated yet
        (0.2, 0.8, True, True, ""),
    ],
)
def test_each_view_records_whether_it_went_to_people_whatever_its_scores(
    t_pass: float, t_fail: float, untrained: bool, view_calibrated: bool, held: str
) -> None:
    project = make_project()
    row = {**scores(0.5), **({"region_untrained": True} if untrained else {})}

    decision = decide_view(
        project=project, scores=row, t_pass=t_pass, t_fail=t_fail, error="", view_calibrated=view_calibrated
    )

    assert decision.held == held and decision.action == "review"
    assert decision.as_dict()["held"] == held


@pytest.mark.parametrize(
    ("decision", "audit_rate", "reason", "sampled"),
    [
        (Decision("review", "uncertain"), 0.0, "uncertain", False),  # picked for its score
        (Decision("review", "uncertain", held="project"), 0.0, "uncertain", True),  # every part goes
        (Decision("review", "drift", held="station"), 0.0, "drift", False),  # every part of one station
        (Decision("pass"), 1.0, "audit_sample", True),
        (Decision("review", "uncertain"), 1.0, "uncertain", True),  # drawn, and doubtful anyway
    ],
    ids=["doubtful", "project-held", "station-held", "audited", "drawn-doubtful"],
)
def test_a_review_item_says_whether_its_part_came_to_people_whatever_its_scores(
    decision: Decision, audit_rate: float, reason: str, sampled: bool
) -> None:
    project = make_project()
    Project.objects.filter(pk=project.pk).update(audit_rate=audit_rate)
    project.refresh_from_db()
    part = Part.objects.create(project=project, serial="S-1")

    _route_part(scored_view(project, part, decision, "classifier:1", 0), deployed=True, model_version="classifier:1")

    item = part.review_items.get()
    assert (item.reason, item.sampled) == (reason, sampled)


def test_a_cold_start_part_is_part_of_the_sample() -> None:
    project = make_project()
    part = Part.objects.create(project=project, serial="S-1")

    _route_part(scored_view(project, part, Decision("pass"), "", 0), deployed=False, model_version="")

    assert part.review_items.values_list("reason", "sampled").get() == ("cold_start", True)


class History:
    """Parts one station photographed, the set ``label`` scored and a person decided, each
    routed as the test says."""

    def __init__(self, project: Project, label: str = "classifier:1") -> None:
        self.project, self.label = project, label
        self.station = make_station(project).station
        self.reviewer = make_user(project)
        self.count = 0
        self.start = timezone.now() - timedelta(days=1)

    def add(
        self, score: float, defective: bool, *, reason: str = "", sampled: bool = False, held: str = ""
    ) -> Inspection:
        """``reason``: the review item it was routed with ("": decided with no routing)."""
        self.count += 1
        part = Part.objects.create(project=self.project, serial=f"H-{self.count}")
        image = Image.objects.create(
            sha256=hashlib.sha256(f"h-{self.project.pk}-{self.count}".encode()).hexdigest(),
            file="x", format="PNG", width=1, height=1, bytes=1,
        )  # fmt: skip
        decision = Decision("review", reason or "uncertain", held=held).as_dict()
        inspection = Inspection.objects.create(
            project=self.project, part=part, station=self.station, image=image, captured_at=timezone.now(),
            status="done", model_version=self.label, scores={"defect_score": score, "decision": decision},
        )  # fmt: skip
        if reason:
            ReviewItem.objects.create(
                project=self.project, part=part, inspection=inspection, reason=reason, sampled=sampled,
                status="decided",
            )  # fmt: skip
        verdict = Verdict.objects.create(
            project=self.project, part=part, outcome="fail" if defective else "pass", source="human",
            decided_by=self.reviewer,
        )  # fmt: skip
        # One decision a second, so that "decided since" is exact.
        Verdict.objects.filter(pk=verdict.pk).update(created_at=self.start + timedelta(seconds=self.count))
        return inspection

    def decided_at(self, inspection: Inspection) -> Any:
        return inspection.part.verdicts.get().created_at

    def line(self, n: int, seed: int, **routed: Any) -> None:
        """n parts of the line: 10 % defective, scores as a fair model gives them."""
        rng = np.random.default_rng(seed)
        for _ in range(n):
            defective = bool(rng.random() < 0.1)
            self.add(float(rng.beta(8, 2) if defective else rng.beta(2, 8)), defective, **routed)


def fitted(project: Project, label: str = "classifier:1") -> tuple[int, float, float]:
    calibration = calibration_run(project=project, model_version=label)
    return calibration.parts, calibration.t_pass, calibration.t_fail


def test_the_projects_thresholds_are_fitted_on_the_parts_that_came_to_people_whatever_their_scores() -> None:
    # Once the models decide, people see the doubtful parts and a random few of the rest. A fit
    # on all of those sees the doubtful band crowded and the auto-passed parts thinned out: the
    # defects that slip under the threshold are under-counted. Only the fair sample counts.
    project, fair_only = make_project(), make_project()
    history, reference = History(project), History(fair_only)
    for target in (history, reference):
        target.line(600, seed=1, reason="cold_start", sampled=True)  # before any model: all parts
        target.line(900, seed=2, reason="audit_sample", sampled=True)  # drawn since
        target.line(500, seed=3)  # decided with no routing (a person faster than the models)
    for index in range(1500):  # doubtful goods the models sent to people for their scores
        history.add(0.2 + 0.2 * index / 1500, False, reason="uncertain")
    history.line(300, seed=4, reason="drift", held="station")  # one station held: not the line's mix

    got, expected = fitted(project), fitted(fair_only)

    assert got == expected and got[0] == 2000
    # Counting every decided part would certify a looser auto-pass than the fair sample does.
    rows = Inspection.objects.filter(project=project)
    everything = calibrate(
        np.array([row.scores["defect_score"] for row in rows]),
        np.array([row.part.verdicts.get().outcome == "fail" for row in rows.select_related("part")]),
        target_escape=project.target_escape_rate,
        target_false_reject=project.target_false_reject_rate,
        delta=1 - project.calibration_confidence,
    )
    assert everything.t_pass > got[1]


def test_the_projects_thresholds_are_fitted_on_the_latest_parts_of_the_sample(settings: Any) -> None:
    settings.LOUPE_CALIBRATION_WINDOW = 1000
    project, latest_only = make_project(), make_project()
    history, reference = History(project), History(latest_only)
    for index in range(800):  # an older line where every defect scored low
        history.add(0.01 + index / 80_000, index % 10 == 0, reason="audit_sample", sampled=True)
    history.line(1000, seed=5, reason="audit_sample", sampled=True)
    reference.line(1000, seed=5, reason="audit_sample", sampled=True)

    assert fitted(project) == fitted(latest_only) and fitted(project)[0] == 1000


def test_a_drifting_stations_own_thresholds_grow_from_its_held_parts_and_the_random_sample_only() -> None:
    from inspection.services.routing import calibration_parts, calibration_parts_drift

    project = make_project()
    history = History(project)
    before = history.add(0.3, False, reason="audit_sample", sampled=True)
    since = timezone.now()
    held = [history.add(0.1 * i, i > 7, reason="drift", held="station") for i in range(10)]
    drawn = history.add(0.05, False, reason="audit_sample", sampled=True)
    doubtful = history.add(0.55, True, reason="drift")  # after its thresholds took over: for its score
    Inspection.objects.filter(pk=before.pk).update(received_at=since - timedelta(minutes=1))

    station_scores, _ = calibration_parts_drift(
        project=project, model_version=history.label, station=history.station, since=since
    )
    project_scores, _ = calibration_parts(project=project, model_version=history.label)

    expected = sorted([row.scores["defect_score"] for row in held] + [drawn.scores["defect_score"]])
    assert sorted(station_scores.tolist()) == pytest.approx(expected)
    assert doubtful.scores["defect_score"] not in station_scores.tolist()
    # The project's fit takes the random sample only, not one station's held parts.
    assert sorted(project_scores.tolist()) == pytest.approx(sorted([0.3, 0.05]))


def test_when_the_latest_sampled_parts_show_the_models_got_worse_the_fit_starts_again_from_them(
    settings: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    settings.LOUPE_CALIBRATION_WINDOW, settings.LOUPE_CALIBRATION_RECENT = 3000, 500
    project = make_project()
    history = History(project)
    history.line(2500, seed=6, reason="audit_sample", sampled=True)
    steady = fitted(project)
    rng = np.random.default_rng(7)
    changed = []
    for index in range(500):  # the line changed: a third of the defects now score like goods
        defective = index % 10 == 0
        silent = defective and rng.random() < 0.33
        score = float(rng.beta(8, 2) if defective and not silent else rng.beta(2, 8))
        changed.append(history.add(score, defective, reason="audit_sample", sampled=True))

    pushed: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        "inspection.services.routing.notify_routing", lambda **kw: pushed.append((kw["event"], kw["payload"]))
    )
    with django_capture_on_commit_callbacks(execute=True):
        calibration = calibration_run(project=project, model_version=history.label)
    history.line(100, seed=8, reason="audit_sample", sampled=True)
    with django_capture_on_commit_callbacks(execute=True):
        later = calibration_run(project=project, model_version=history.label)

    assert calibration.sample_since == history.decided_at(changed[0])
    assert calibration.parts == 500 and calibration.t_pass < steady[1]
    event = AuditEvent.objects.filter(action="routing.calibrated").latest("id")
    assert event.after["parts"] == 600 and event.after["sample_since"] == calibration.sample_since.isoformat()
    # Later fits keep to the parts since the change, until the window moves past it.
    assert (later.sample_since, later.parts) == (calibration.sample_since, 600)
    # The managers' dashboards hear of the change once, when the fit started again.
    assert pushed == [
        ("routing.shifted", {"model_version": history.label, "sample_since": calibration.sample_since.isoformat()})
    ]


def test_thresholds_that_decide_nothing_are_refitted_as_soon_as_enough_parts_are_decided() -> None:
    from inspection.services.routing import routing_recalibrate_held

    project = make_project()
    # Seven parts with no escape certify 10 % at 50 % confidence (parts_needed).
    Project.objects.filter(pk=project.pk).update(target_escape_rate=0.1, calibration_confidence=0.5)
    project.refresh_from_db()
    version = ModelVersion.objects.create(project=project, kind="classifier", status=ModelVersion.Status.DEPLOYED)
    history = History(project, label=version.label)
    first = calibration_run(project=project, model_version=history.label)  # on nothing: decides no part
    history.start = timezone.now()  # the parts below are decided after that fit

    for index in range(5):
        history.add(0.05 + index / 100, False, reason="uncertain", sampled=True, held="project")
    too_few = routing_recalibrate_held()
    for _ in range(2):
        history.add(0.9, True, reason="uncertain", sampled=True, held="project")
    for _ in range(10):
        history.add(0.5, False, reason="uncertain")  # sent for its score: not the sample
    enough = routing_recalibrate_held()
    latest = Calibration.objects.filter(project=project).latest("id")
    again = routing_recalibrate_held()

    assert (first.t_pass, first.parts) == (-1.0, 0)
    assert too_few == 0
    assert enough == 1 and latest.parts == 7 and latest.t_pass >= 0.09
    assert again == 0  # it decides parts now: the ten-minute refit takes it from here


def test_a_drifting_stations_own_fit_takes_its_latest_decided_parts_as_the_projects_does(settings: Any) -> None:
    from inspection.services.routing import calibration_parts_drift

    settings.LOUPE_CALIBRATION_WINDOW = 4
    project = make_project()
    history = History(project)
    since = timezone.now() - timedelta(minutes=1)
    held = [history.add(0.1 * i, False, reason="drift", held="station") for i in range(7)]

    scores, _ = calibration_parts_drift(
        project=project, model_version=history.label, station=history.station, since=since
    )

    assert sorted(scores.tolist()) == pytest.approx([row.scores["defect_score"] for row in held[-4:]])
