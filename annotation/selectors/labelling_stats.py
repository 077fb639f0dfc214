"""A project's labelling progress: tasks by status, each annotator's work, agreement."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Max, Q

from annotation.agreement import cohen_kappa, fleiss_kappa, mean_pairwise_iou
from annotation.masks import rasterize_shapes
from annotation.models import Label, LabelSkip, LabelTask
from inspection.models import Project
from inspection.permissions import CAN_MANAGE
from inspection.selectors import role_in_project

# Agreement is measured on the newest tasks with two or more submitted labels, at most this
# many: enough for a stable kappa, and a bounded amount of rasterising per request.
AGREEMENT_WINDOW = 200
# Shapes are compared as masks of the image shrunk to this longest side (an approximation
# of the full-resolution IoU, within a pixel or two of the outline at this scale).
IOU_SIDE = 256


def labelling_stats(*, project: Project, user: Any) -> dict[str, Any]:
    """Managers see every annotator's row; anyone else only their own."""
    by_status = dict(LabelTask.objects.filter(project=project).values_list("status").annotate(n=Count("id")).order_by())
    labels = Label.objects.filter(task__project=project)
    skips = LabelSkip.objects.filter(task__project=project)
    if role_in_project(user=user, project_id=project.pk) not in CAN_MANAGE:
        labels, skips = labels.filter(author=user), skips.filter(user=user)
    rows: dict[int, dict[str, Any]] = {}
    for author_id, submitted, last_at in (
        labels.values("author_id")
        .annotate(submitted=Count("id", filter=Q(submitted=True)), last_at=Max("updated_at"))
        .values_list("author_id", "submitted", "last_at")
        .order_by()
    ):
        rows[author_id] = {"submitted": submitted, "skipped": 0, "last_at": last_at}
    for user_id, skipped, last_at in (
        skips.values("user_id").annotate(n=Count("id"), last=Max("created_at")).values_list("user_id", "n", "last")
        .order_by()
    ):  # fmt: skip
        row = rows.setdefault(user_id, {"submitted": 0, "skipped": 0, "last_at": None})
        row["skipped"] = skipped
        row["last_at"] = max(filter(None, [row["last_at"], last_at]))
    names = dict(get_user_model().objects.filter(pk__in=list(rows)).values_list("pk", "username"))
    annotators = sorted(({"username": names[pk], **row} for pk, row in rows.items()), key=lambda r: r["username"])
    return {
        "tasks": {status: by_status.get(status, 0) for status in LabelTask.Status.values},
        "annotators": annotators,
        "agreement": _agreement(project),
    }


def _agreement(project: Project) -> dict[str, Any]:
    task_ids = list(
        LabelTask.objects.filter(project=project, labels_submitted__gte=2)
        .order_by("-id")
        .values_list("id", flat=True)[:AGREEMENT_WINDOW]
    )
    grouped: dict[int, list[Label]] = defaultdict(list)
    for label in (
        Label.objects.filter(task_id__in=task_ids, submitted=True)
        .select_related("task__inspection__image")
        .order_by("task_id", "submitted_at", "id")
    ):
        grouped[label.task_id].append(label)
    compared = [labels for labels in grouped.values() if len(labels) >= 2]
    ratings = [[(label.outcome, label.defect_class_id) for label in labels] for labels in compared]
    if ratings and all(len(task) == 2 for task in ratings):
        kappa = cohen_kappa([(task[0], task[1]) for task in ratings])
    else:
        kappa = fleiss_kappa(ratings)
    ious = []
    for labels in compared:
        image = labels[0].task.inspection.image
        scale = min(1.0, IOU_SIDE / max(image.width, image.height))
        masks = [rasterize_shapes(label.shapes, width=image.width, height=image.height, scale=scale)
                 for label in labels]  # fmt: skip
        iou = mean_pairwise_iou(masks)
        if iou is not None:
            ious.append(iou)
    return {
        "class_kappa": round(kappa, 4) if kappa is not None else None,
        "mean_shape_iou": round(sum(ious) / len(ious), 4) if ious else None,
        "tasks_compared": len(compared),
    }
