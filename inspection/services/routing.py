"""Routing: each part is passed or failed by the models when they are sure, and sent to a
person when they are not, when the models disagree, when the part is unlike anything they
were trained on, or when it is drawn for the random audit that measures real error rates.

Thresholds come from the latest calibration of the deployed model set on human-labelled
parts (``workers.routing.calibration``); before there is one, the project's fixed
``auto_pass_threshold`` / ``auto_fail_threshold`` apply.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import transaction

from inspection.models import Calibration, CalibrationScore, Inspection, Project, Verdict
from inspection.services.audit import audit_record


@dataclass(frozen=True)
class Decision:
    action: str  # "pass", "fail" or "review"
    reason: str = ""  # for "review": a ReviewItem.Reason value
    defect_class: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "defect_class": self.defect_class}


# Calibration scores are written in batches of this many while a new deployment rescores.
RESCORE_SAVE_EVERY = 100


def thresholds_for(*, project: Project, model_version: str) -> tuple[float, float, Calibration | None]:
    calibration = (
        Calibration.objects.filter(project=project, model_version=model_version)
        .only("id", "t_pass", "t_fail")  # per part: not the workload curve
        .order_by("-id")
        .first()
    )
    if calibration is not None:
        return calibration.t_pass, calibration.t_fail, calibration
    return project.auto_pass_threshold, project.auto_fail_threshold, None


def decide_view(*, project: Project, scores: dict[str, Any], t_pass: float, t_fail: float, error: str) -> Decision:
    """The decision for one image from its model scores (see ``run_models``)."""
    if error or scores.get("defect_score") is None:
        return Decision("review", "model_error")
    if scores.get("region_untrained"):  # see model_runs._region_untrained
        return Decision("review", "region_changed")
    ratio = scores.get("anomaly_ratio")
    if ratio is not None and ratio >= project.out_of_distribution_ratio:
        return Decision("review", "out_of_distribution")
    flags = [scores[name] for name in ("classifier_flag", "anomaly_flag") if name in scores]
    if len(flags) == 2 and flags[0] != flags[1]:
        return Decision("review", "disagreement")
    score = float(scores["defect_score"])
    if score <= t_pass:
        return Decision("pass")
    if score >= t_fail:
        return Decision("fail", defect_class=scores.get("predicted_class"))
    return Decision("review", "uncertain")


def decide_part(views: list[Decision]) -> Decision:
    """One verdict per part: any failing view fails it; any doubtful view sends it to people."""
    for decision in views:
        if decision.action == "fail":
            return decision
    for decision in views:
        if decision.action == "review":
            return decision
    return Decision("pass")


def audit_draw(*, project: Project, decision: Decision, rng: random.Random | None = None) -> Decision:
    """A share (``audit_rate``) of automatic decisions goes to people anyway."""
    if decision.action in {"pass", "fail"} and (rng or random).random() < project.audit_rate:
        return Decision("review", "audit_sample", decision.defect_class)
    return decision


# --- calibration ---------------------------------------------------------------------------


def trained_on_images(*, project: Project, model_version: str) -> set[int]:
    """Ids of the images any model of the set ``model_version`` (a deployed label such as
    ``anomaly:3,classifier:7/int8``) learned from, its validation split included."""
    from inspection.models import ModelVersion

    pks = set()
    for member in filter(None, model_version.split(",")):
        _, _, rest = member.partition(":")
        if rest.split("/")[0].isdigit():
            pks.add(int(rest.split("/")[0]))
    images: set[int] = set()
    for training_data in ModelVersion.objects.filter(project=project, pk__in=pks).values_list(
        "training_data", flat=True
    ):
        images.update(int(i) for i in (training_data or {}).get("images", []))
    return images


def calibration_parts(*, project: Project, model_version: str) -> tuple[np.ndarray, np.ndarray]:
    """(defect scores, human says defective) of parts the deployed set scored and a person decided.

    Images the set trained on are left out: decided parts feed the training pool, and a model
    scores its own training images more confidently than new parts, which would loosen the
    auto-pass threshold past the escape target (the bound holds for parts it has not seen).
    """
    decided = Verdict.objects.filter(project=project, is_final=True, source=Verdict.Source.HUMAN)
    human = dict(decided.values_list("part_id", "outcome"))
    trained_on = trained_on_images(project=project, model_version=model_version)
    scores, defective = [], []
    # Decided parts as a subquery and training images filtered here: either can hold more ids
    # than SQLite takes as query parameters.
    rows = Inspection.objects.filter(
        project=project, model_version=model_version, part_id__in=decided.values("part_id")
    )
    for part_id, image_id, view_scores in rows.values_list("part_id", "image_id", "scores"):
        if image_id in trained_on or part_id not in human:  # decided after ``human`` was read
            continue
        if isinstance(view_scores, dict) and view_scores.get("defect_score") is not None:
            scores.append(float(view_scores["defect_score"]))
            defective.append(human[part_id] == Verdict.Outcome.FAIL)
    # Images of decided parts that this set scored after it was deployed (``calibration_rescore``).
    rescored = CalibrationScore.objects.filter(
        project=project, model_version=model_version, inspection__part_id__in=decided.values("part_id")
    ).values_list("inspection__part_id", "inspection__image_id", "defect_score")
    for part_id, image_id, score in rescored:
        if image_id in trained_on or part_id not in human:
            continue
        scores.append(float(score))
        defective.append(human[part_id] == Verdict.Outcome.FAIL)
    return np.asarray(scores, dtype=np.float64), np.asarray(defective, dtype=bool)


def calibration_rescore(*, project_id: int, limit: int = 2000) -> int:
    """Calibrate a newly deployed model set at once: score the images of the latest ``limit``
    human-decided parts that it has not scored itself, then refit the thresholds. Without this a
    new deployment (or a switch to INT8) sends every part to review until it has served enough
    parts that people then decide. Images the set trained on are skipped (``calibration_parts``).
    Runs the models outside any transaction; idempotent (a rescored image is stored once per
    set). Returns how many images were scored."""
    from inspection import serving
    from inspection.services.model_runs import run_models

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return 0
    label = deployed_label(project=project)
    if not label:
        return 0
    deployed = serving.deployed_versions(project_id=project.pk)
    decided = list(
        Verdict.objects.filter(project=project, is_final=True, source=Verdict.Source.HUMAN)
        .order_by("-id")
        .values_list("part_id", flat=True)[:limit]
    )
    done_already = CalibrationScore.objects.filter(model_version=label).values("inspection_id")
    todo = (
        Inspection.objects.filter(project=project, part_id__in=decided, status=Inspection.Status.DONE)
        .exclude(model_version=label)
        .exclude(pk__in=done_already)
        .select_related("image", "project", "part", "station")
    )
    trained_on = trained_on_images(project=project, model_version=label)
    scored: list[CalibrationScore] = []
    saved = 0
    for inspection in todo.iterator(chunk_size=200):
        if inspection.image_id in trained_on:
            continue
        run = run_models(inspection=inspection, deployed=deployed, save_overlays=False)
        if run.defect_score is not None and not run.error:
            scored.append(
                CalibrationScore(
                    project=project, model_version=label, inspection=inspection, defect_score=float(run.defect_score)
                )
            )
        if len(scored) >= RESCORE_SAVE_EVERY:
            # Kept as it goes: a run stopped by its time limit leaves its scores, and the next
            # run starts where it stopped (scored parts are skipped above).
            saved += len(CalibrationScore.objects.bulk_create(scored, ignore_conflicts=True))
            scored = []
    saved += len(CalibrationScore.objects.bulk_create(scored, ignore_conflicts=True))
    calibration_run(project=project, model_version=label)
    return saved


def calibration_run(*, project: Project, model_version: str, actor: Any = None) -> Calibration:
    """Fit thresholds for ``model_version`` (the deployed set's label) to the project's targets."""
    from workers.routing.calibration import calibrate, workload_curve

    scores, defective = calibration_parts(project=project, model_version=model_version)
    delta = 1.0 - project.calibration_confidence
    chosen = calibrate(
        scores,
        defective,
        target_escape=project.target_escape_rate,
        target_false_reject=project.target_false_reject_rate,
        delta=delta,
    )
    curve = workload_curve(scores, defective, target_false_reject=project.target_false_reject_rate, delta=delta)
    with transaction.atomic():
        calibration = Calibration.objects.create(
            project=project,
            model_version=model_version,
            parts=chosen.n,
            target_escape_rate=project.target_escape_rate,
            target_false_reject_rate=project.target_false_reject_rate,
            confidence=project.calibration_confidence,
            t_pass=chosen.t_pass,
            t_fail=chosen.t_fail,
            expected_review_rate=chosen.review_rate,
            escape_rate=chosen.escape_rate,
            false_reject_rate=chosen.false_reject_rate,
            curve=[point.__dict__ for point in curve],
        )
        audit_record(
            project_id=project.pk,
            actor=actor,
            action="routing.calibrated",
            subject=calibration,
            after={
                "model_version": model_version,
                "parts": chosen.n,
                "t_pass": chosen.t_pass,
                "t_fail": chosen.t_fail,
                "target_escape_rate": project.target_escape_rate,
            },
        )
    return calibration


def deployed_label(*, project: Project) -> str:
    from inspection.models import ModelVersion

    rows = ModelVersion.objects.filter(project=project, status=ModelVersion.Status.DEPLOYED)
    return ",".join(sorted(row.serving_label for row in rows))


def routing_recalibrate(*, project_id: int, actor: Any = None) -> Calibration | None:
    """Recalibrate for whatever is deployed now (after a deployment, a change of targets, or
    new human labels). Returns None when nothing is deployed."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    label = deployed_label(project=project)
    if not label:
        return None
    return calibration_run(project=project, model_version=label, actor=actor)


def routing_recalibrate_stale() -> int:
    """Refit projects whose deployed models gained human-labelled parts since their last
    calibration (run periodically). Returns how many were refitted."""
    refitted = 0
    for project in Project.objects.filter(model_versions__status="deployed").distinct():
        label = deployed_label(project=project)
        latest = Calibration.objects.filter(project=project, model_version=label).order_by("-id").first()
        newer = Verdict.objects.filter(project=project, source=Verdict.Source.HUMAN, is_final=True)
        if latest is not None:
            newer = newer.filter(created_at__gt=latest.created_at)
        if latest is None or newer.exists():
            calibration_run(project=project, model_version=label)
            refitted += 1
    return refitted
