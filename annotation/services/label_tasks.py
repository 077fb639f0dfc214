"""Label tasks: created when an inspection is done, prioritised for active learning,
skipped by annotators, adjudicated by managers."""

from __future__ import annotations

import math
from typing import Any

from django.db import transaction
from django.utils import timezone

from annotation.models import LabelSkip, LabelTask
from annotation.services.annotations import training_annotation_sync
from annotation.shapes import validate_label
from inspection.models import DefectClass, Inspection, Project
from inspection.services.audit import audit_record


def label_task_priority(*, scores: dict[str, Any], out_of_distribution_ratio: float) -> tuple[float, list[str]]:
    """``(priority, reasons)`` for an image from its stored model scores (``run_models``).

    priority = uncertainty + disagreement + novelty, each term in [0, 1], so 0..3:

    - uncertainty = 1 - |2p - 1| with p = the classifier's ``defect_probability`` (else the
      combined ``defect_score``): 1 at p = 0.5, 0 when the model is sure either way;
    - disagreement = 1 when ``classifier_flag`` and ``anomaly_flag`` differ, else 0;
    - novelty = clamp((anomaly_ratio - 1) / (R - 1), 0, 1) with R the project's
      ``out_of_distribution_ratio``: 0 up to the good parts' threshold, 1 from R times it.

    Reasons name the terms that matter: ``uncertain`` (uncertainty >= 0.5, i.e. 0.25 <= p <=
    0.75), ``disagreement``, ``novel`` (anomaly_ratio >= R). Without any model score (cold
    start, or the models failed) every image is equally unknown: priority 1, ``no_model``.
    """
    p = scores.get("defect_probability", scores.get("defect_score"))
    ratio = scores.get("anomaly_ratio")
    flags = [scores[name] for name in ("classifier_flag", "anomaly_flag") if name in scores]
    if p is None and ratio is None:
        return 1.0, ["no_model"]
    reasons = []
    uncertainty = 0.0
    if isinstance(p, int | float) and math.isfinite(p):
        uncertainty = 1.0 - abs(2.0 * min(1.0, max(0.0, float(p))) - 1.0)
        if uncertainty >= 0.5:
            reasons.append("uncertain")
    disagreement = 1.0 if len(flags) == 2 and bool(flags[0]) != bool(flags[1]) else 0.0
    if disagreement:
        reasons.append("disagreement")
    novelty = 0.0
    if isinstance(ratio, int | float) and math.isfinite(ratio):
        span = max(out_of_distribution_ratio - 1.0, 1e-6)
        novelty = min(1.0, max(0.0, (float(ratio) - 1.0) / span))
        if ratio >= out_of_distribution_ratio:
            reasons.append("novel")
    return round(uncertainty + disagreement + novelty, 6), reasons


def label_task_ensure(*, inspection: Inspection) -> None:
    """Like ``label_task_create_for`` without reading the row back: one ``INSERT ... ON
    CONFLICT DO NOTHING``, for the per-part hot path (every finished inspection)."""
    label_tasks_ensure(inspections=[inspection])


def label_tasks_ensure(*, inspections: list[Inspection]) -> None:
    """``label_task_ensure`` for several finished inspections in one statement."""
    tasks = []
    for inspection in inspections:
        priority, reasons = label_task_priority(
            scores=inspection.scores or {}, out_of_distribution_ratio=inspection.project.out_of_distribution_ratio
        )
        tasks.append(
            LabelTask(project_id=inspection.project_id, inspection=inspection, priority=priority, reasons=reasons)
        )
    if tasks:
        LabelTask.objects.bulk_create(tasks, ignore_conflicts=True)


def label_task_create_for(*, inspection: Inspection) -> LabelTask:
    """The label task of a done inspection, created on first call. Idempotent: a redelivered
    run or the backfill command gets the same row."""
    priority, reasons = label_task_priority(
        scores=inspection.scores or {}, out_of_distribution_ratio=inspection.project.out_of_distribution_ratio
    )
    task, _ = LabelTask.objects.get_or_create(
        project_id=inspection.project_id,
        inspection=inspection,
        defaults={"priority": priority, "reasons": reasons},
    )
    return task


def label_tasks_sync(*, project: Project, batch_size: int = 1000) -> int:
    """Backfill: a task for every done inspection of ``project`` that has none. Restartable
    (rows are inserted in batches, duplicates ignored); returns how many were created."""
    created = 0
    last_id = 0
    while True:
        batch = list(
            Inspection.objects.filter(project=project, status=Inspection.Status.DONE, pk__gt=last_id)
            .exclude(label_tasks__project=project)
            .order_by("pk")
            .only("pk", "scores")[:batch_size]
        )
        if not batch:
            return created
        last_id = batch[-1].pk
        rows = []
        for inspection in batch:
            priority, reasons = label_task_priority(
                scores=inspection.scores or {}, out_of_distribution_ratio=project.out_of_distribution_ratio
            )
            rows.append(LabelTask(project=project, inspection=inspection, priority=priority, reasons=reasons))
        with transaction.atomic():
            before = LabelTask.objects.filter(project=project).count()
            LabelTask.objects.bulk_create(rows, ignore_conflicts=True)
            created += LabelTask.objects.filter(project=project).count() - before


def label_task_skip(*, task: LabelTask, user: Any) -> None:
    """``user`` does not want this task offered again. Idempotent."""
    LabelSkip.objects.get_or_create(task=task, user=user)


def label_task_adjudicate(*, task: LabelTask, actor: Any, outcome: Any, defect_class: Any, shapes: Any) -> LabelTask:
    """A manager's final label for the task: it closes the task to further labels and becomes
    its training label whatever ``training_labels`` says. A second adjudication replaces the
    first. Audited (``label.adjudicated``)."""
    image = task.inspection.image
    class_ids = set(DefectClass.objects.filter(project_id=task.project_id).values_list("id", flat=True))
    body = validate_label(
        outcome=outcome, defect_class=defect_class, shapes=shapes,
        width=image.width, height=image.height, class_ids=class_ids,
    )  # fmt: skip
    with transaction.atomic():
        locked = (
            LabelTask.objects.select_for_update(of=("self",))
            .select_related("project", "inspection", "inspection__image")
            .get(pk=task.pk)
        )
        before = {"status": locked.status, "labels_submitted": locked.labels_submitted}
        locked.status = LabelTask.Status.ADJUDICATED
        locked.adjudicated_by = actor
        locked.adjudicated_at = timezone.now()
        locked.adjudicated_outcome = body.outcome
        locked.adjudicated_defect_class_id = body.defect_class_id
        locked.adjudicated_shapes = body.shapes
        locked.save(
            update_fields=[
                "status", "adjudicated_by", "adjudicated_at", "adjudicated_outcome",
                "adjudicated_defect_class", "adjudicated_shapes",
            ]
        )  # fmt: skip
        training_annotation_sync(task=locked)
        audit_record(
            project_id=locked.project_id,
            actor=actor,
            action="label.adjudicated",
            subject=locked,
            before=before,
            after={"outcome": body.outcome, "defect_class": body.defect_class_id, "shapes": len(body.shapes)},
        )
    return locked
