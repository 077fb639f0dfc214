"""Redeploying safely: a trained model version against the set serving, before it serves.

Each candidate is scored with the models it would serve beside (the deployed versions of the
other kinds) on the project's latest audited parts, the fair sample the routing thresholds
are fitted on (``routing.fair_verdicts``), and the serving set on the same parts. Both are
fitted to the project's escape and false-reject targets; the share of parts each would send
to people at those bounds says which is better (``workers.routing.calibration.compare``).
A deployment of a version found worse is refused unless the manager insists
(``model_version_deploy(force=True)``, audited).

The candidate's scores are kept as calibration scores of the set it would form, so that if it
is deployed its thresholds are fitted at once without scoring the parts again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from inspection.errors import Conflict, DomainError
from inspection.models import CalibrationScore, Inspection, ModelVersion, Project, Verdict
from inspection.notifications import notify_training_progress
from inspection.services.audit import audit_record

logger = logging.getLogger(__name__)

COMPARE_PARTS = 2000  # the latest parts of the fair sample
SAVE_EVERY = 100


def _set_label(versions: dict[str, ModelVersion]) -> str:
    return ",".join(sorted(version.serving_label for version in versions.values()))


def model_version_compare(
    *, version_id: int, limit: int = COMPARE_PARTS, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Compare version ``version_id`` (ready or retired) with the set serving on the latest
    ``limit`` parts of the fair sample that neither set trained on; store and return the result
    (``ModelVersion.comparison``). Runs the models outside any transaction; idempotent (scores
    already kept are reused)."""
    from inspection import serving
    from inspection.services.model_runs import run_models
    from inspection.services.routing import deployed_label, fair_verdicts, trained_on_images
    from workers.ml.metrics import binary_auroc
    from workers.routing.calibration import compare

    version = ModelVersion.objects.select_related("project").get(pk=version_id)
    if version.status not in {ModelVersion.Status.READY, ModelVersion.Status.RETIRED}:
        raise Conflict(f"Only a ready or retired version is compared; {version.label} is {version.status}.")
    project: Project = version.project
    deployed = serving.deployed_versions(project_id=project.pk)
    candidate_set = {**deployed, version.kind: version}
    serving_label, candidate_label = deployed_label(project=project), _set_label(candidate_set)
    trained_on = trained_on_images(project=project, model_version=candidate_label) | trained_on_images(
        project=project, model_version=serving_label
    )
    outcomes = dict(fair_verdicts(project=project).order_by("-id").values_list("part_id", "outcome")[:limit])
    inspections = [
        inspection
        for inspection in Inspection.objects.filter(
            project=project, part_id__in=list(outcomes), status=Inspection.Status.DONE
        ).select_related("image", "project", "part", "station")
        if inspection.image_id not in trained_on
    ]
    total = len(inspections) * (2 if serving_label else 1)
    done = 0

    def scores_of(label: str, models: dict[str, ModelVersion]) -> dict[int, float]:
        """Defect score per inspection id under the set ``label``: as served live, as kept
        from an earlier scoring, or scored now (and kept). Views the set never learnt are
        left out: those parts are their station's own calibration's."""
        nonlocal done
        kept = dict(
            CalibrationScore.objects.filter(model_version=label, view_key="", inspection__in=inspections).values_list(
                "inspection_id", "defect_score"
            )
        )
        found: dict[int, float] = {}
        fresh: list[CalibrationScore] = []
        for inspection in inspections:
            live = inspection.scores if isinstance(inspection.scores, dict) else {}
            if inspection.model_version == label and live.get("defect_score") is not None:
                if not live.get("region_untrained"):
                    found[inspection.pk] = float(live["defect_score"])
            elif inspection.pk in kept:
                found[inspection.pk] = float(kept[inspection.pk])
            else:
                run = run_models(inspection=inspection, deployed=models, save_overlays=False)
                if run.defect_score is not None and not run.error and not run.scores.get("region_untrained"):
                    found[inspection.pk] = float(run.defect_score)
                    fresh.append(
                        CalibrationScore(
                            project=project,
                            model_version=label,
                            inspection=inspection,
                            defect_score=found[inspection.pk],
                        )
                    )
            done += 1
            if len(fresh) >= SAVE_EVERY:
                CalibrationScore.objects.bulk_create(fresh, ignore_conflicts=True)
                fresh = []
            if progress is not None and done % SAVE_EVERY == 0:
                progress(done, total)
        CalibrationScore.objects.bulk_create(fresh, ignore_conflicts=True)
        return found

    # One set after the other: each worker process keeps one loaded version per kind.
    candidate = scores_of(candidate_label, candidate_set)
    current = scores_of(serving_label, deployed) if serving_label else {}
    ids = [pk for pk in candidate if pk in current] if serving_label else list(candidate)
    by_id = {inspection.pk: inspection for inspection in inspections}
    defective = np.array([outcomes[by_id[pk].part_id] == Verdict.Outcome.FAIL for pk in ids], dtype=bool)
    candidate_scores = np.array([candidate[pk] for pk in ids], dtype=np.float64)
    serving_scores = np.array([current[pk] for pk in ids], dtype=np.float64) if serving_label else candidate_scores
    result = compare(
        serving_scores,
        candidate_scores,
        defective,
        target_escape=project.target_escape_rate,
        target_false_reject=project.target_false_reject_rate,
        delta=1.0 - project.calibration_confidence,
    )

    def figures(fit: Any, scores: np.ndarray) -> dict[str, Any]:
        both = 0 < int(defective.sum()) < defective.size
        return {
            "review_rate": fit.review_rate,
            "escape_rate": fit.escape_rate,
            "false_reject_rate": fit.false_reject_rate,
            "t_pass": fit.t_pass,
            "t_fail": fit.t_fail,
            "auroc": binary_auroc(defective.astype(int), scores) if both else None,
        }

    comparison = {
        "status": "done",
        "compared_at": timezone.now().isoformat(),
        "candidate": candidate_label,
        "serving": serving_label or None,
        "parts": len(ids),
        "defective": int(defective.sum()),
        "target_escape_rate": project.target_escape_rate,
        "target_false_reject_rate": project.target_false_reject_rate,
        "confidence": project.calibration_confidence,
        # With nothing serving there is nothing to be worse than: the figures are the candidate's.
        "verdict": result.verdict if serving_label else "first",
        # 90 % interval of (candidate - serving) share to people over paired resamples of the parts.
        "review_rate_difference": list(result.difference) if serving_label else None,
        "candidate_figures": figures(result.candidate, candidate_scores),
        "serving_figures": figures(result.serving, serving_scores) if serving_label else None,
    }
    with transaction.atomic():
        ModelVersion.objects.filter(pk=version.pk).update(comparison=comparison)
        audit_record(
            project_id=project.pk,
            actor="system",
            action="model.compared",
            subject=version,
            after={key: comparison[key] for key in ("candidate", "serving", "parts", "verdict")},
        )
        payload = {"version": version.pk, "kind": version.kind, "status": version.status, "comparison": comparison}
        transaction.on_commit(lambda: notify_training_progress(project_id=project.pk, payload=payload), robust=True)
    logger.info("compared %s with %s on %s parts: %s", candidate_label, serving_label, len(ids), comparison["verdict"])
    return comparison


def model_compare_queue(*, version: ModelVersion) -> None:
    """Mark ``version``'s comparison running and queue it on a training worker, after commit."""
    from inspection.tasks import model_compare_task

    running = {"status": "running", "requested_at": timezone.now().isoformat()}
    ModelVersion.objects.filter(pk=version.pk).update(comparison=running)
    version.comparison = running
    version_id = version.pk
    transaction.on_commit(lambda: model_compare_task.delay(version_id), robust=True)


ROUTING_KINDS = ("classifier", "anomaly")  # the kinds whose scores route parts


def model_compare_run(*, version_id: int) -> dict[str, Any] | None:
    """The queued comparison of ``version_id`` (``model_compare_task``): progress pushed to the
    project's training screens as it scores, a failure recorded on the version instead of
    raised. None when the version is gone or no longer ready to compare."""
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None or version.status not in {ModelVersion.Status.READY, ModelVersion.Status.RETIRED}:
        return None
    project_id = version.project_id

    def progress(done: int, total: int) -> None:
        running = {"status": "running", "done": done, "total": total}
        ModelVersion.objects.filter(pk=version_id).update(comparison=running)
        notify_training_progress(
            project_id=project_id,
            payload={"version": version_id, "kind": version.kind, "status": version.status, "comparison": running},
        )

    try:
        comparison = model_version_compare(version_id=version_id, progress=progress)
    except Conflict:
        ModelVersion.objects.filter(pk=version_id).update(comparison={})
        return None
    except Exception as exc:
        logger.exception("comparing model version %s failed", version_id)
        failed = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:300]}
        ModelVersion.objects.filter(pk=version_id).update(comparison=failed)
        return failed
    try:
        _promote_if_better(version_id, comparison)
    except DomainError as error:  # e.g. its files no longer match the registry: it stays ready
        logger.warning("model version %s not promoted: %s", version_id, error.detail)
    return comparison


def retraining_start_due() -> list[int]:
    """Start training where a project asks to retrain by itself (``retrain_after_labels``): for
    each deployed classifier or anomaly detector, once that many human labels (review decisions
    and annotations, not imports) arrived since the newest version of its kind began training,
    a new version of the kind with the deployed one's hyperparameters, on everything labelled
    now. Its comparison with the serving models follows the training; with
    ``promote_when_better`` a better one is deployed. Returns the new versions' ids."""
    from annotation.models import Annotation
    from inspection.services.model_versions import training_start

    started: list[int] = []
    projects = Project.objects.filter(
        retrain_after_labels__gt=0, model_versions__status=ModelVersion.Status.DEPLOYED
    ).distinct()
    for project in projects:
        for deployed in ModelVersion.objects.filter(
            project=project, status=ModelVersion.Status.DEPLOYED, kind__in=ROUTING_KINDS
        ):
            newest = (
                ModelVersion.objects.filter(project=project, kind=deployed.kind)
                .exclude(status__in=[ModelVersion.Status.FAILED, ModelVersion.Status.CANCELLED])
                .order_by("-created_at")
                .first()
            )
            if newest is None or newest.status == ModelVersion.Status.TRAINING:
                continue  # one at a time
            since = newest.started_at or newest.created_at
            labels = (
                Annotation.objects.filter(project=project, created_at__gt=since)
                .exclude(source=Annotation.Source.IMPORT)
                .count()
            )
            if labels < project.retrain_after_labels:
                continue
            try:
                version = training_start(project=project, kind=deployed.kind, hyperparameters=deployed.hyperparameters)
            except DomainError as error:
                logger.warning("retraining %s of project %s not started: %s", deployed.kind, project.pk, error.detail)
                continue
            audit_record(
                project_id=project.pk,
                actor="system",
                action="model.retraining_started",
                subject=version,
                after={"kind": version.kind, "labels_since": labels, "after_labels": project.retrain_after_labels},
            )
            started.append(version.pk)
    return started


def _promote_if_better(version_id: int, comparison: dict[str, Any]) -> ModelVersion | None:
    """With ``promote_when_better``: deploy a version its comparison found better than the
    models serving now (at the serving version's precision when it has that copy)."""
    from inspection.services.model_versions import model_version_deploy
    from inspection.services.routing import deployed_label

    version = ModelVersion.objects.select_related("project").get(pk=version_id)
    project = version.project
    if not project.promote_when_better or comparison.get("verdict") != "better":
        return None
    if version.status not in {ModelVersion.Status.READY, ModelVersion.Status.RETIRED}:
        return None
    if comparison.get("serving") != deployed_label(project=project):
        return None  # something else was deployed meanwhile: compare again first
    serving = ModelVersion.objects.filter(
        project=project, kind=version.kind, status=ModelVersion.Status.DEPLOYED
    ).first()
    precision = serving.precision if serving is not None and version.has_int8 else "fp32"
    return model_version_deploy(version=version, actor="system", precision=precision)
