"""Label tasks as each caller may see them, and which one an annotator gets next."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from django.db.models import Exists, Max, Min, OuterRef, QuerySet

from annotation.models import Label, LabelRevision, LabelSkip, LabelTask
from inspection.errors import NotFound
from inspection.models import DefectClass, Project
from inspection.permissions import CAN_MANAGE, CAN_VIEW
from inspection.selectors import access_project, project_ids_for, role_in_project

HISTORY_LIMIT = 500  # newest revisions shown; older ones stay in the table


def label_tasks_for(*, user: Any) -> QuerySet[LabelTask]:
    return LabelTask.objects.filter(project_id__in=project_ids_for(user=user)).select_related(
        "project", "inspection", "inspection__image", "inspection__station"
    )


def access_label_task(*, user: Any, task_id: int, roles: Iterable[str] = CAN_VIEW) -> LabelTask:
    """The task if ``user`` may see it (NotFound otherwise), with ``roles`` checked (Forbidden)."""
    task = label_tasks_for(user=user).filter(pk=task_id).first()
    if task is None:
        raise NotFound("Label task not found.")
    access_project(user=user, project_id=task.project_id, roles=roles)
    return task


def label_of(*, task: LabelTask, user: Any) -> Label | None:
    """The label ``user`` edits: the image's shared label in a single-pass project, else their own."""
    from annotation.services.labels import labels_of

    label: Label | None = labels_of(task, user).first()
    return label


def previous_task_of(*, task: LabelTask, user: Any) -> int | None:
    """The task ``user`` saved a label on most recently before this one (to copy its shapes)."""
    return (
        Label.objects.filter(author=user, task__project_id=task.project_id)
        .exclude(task=task)
        .order_by("-updated_at", "-id")
        .values_list("task_id", flat=True)
        .first()
    )


def label_task_next(*, user: Any, project: Project, order: str, rng: random.Random | None = None) -> LabelTask | None:
    """The next task to offer ``user``: still wanting labels (fewer submitted than
    ``labels_per_image``), not adjudicated, not skipped by them, not already submitted by
    them (single-pass: the shared label submitted by anyone counts). ``active``: highest
    priority first; ``sequential``: oldest first; ``random``: the first task at or after a
    random id (cheap on any table size; not exactly uniform when ids
    have gaps). Nothing is reserved: with k = 1 two people asking at once may get the same
    task, and then edit its one shared label (a stale save is a 409, never a lost update)."""
    candidates = (
        LabelTask.objects.filter(project=project, labels_submitted__lt=project.labels_per_image)
        .exclude(status=LabelTask.Status.ADJUDICATED)
        .exclude(Exists(LabelSkip.objects.filter(task=OuterRef("pk"), user=user)))
        .exclude(Exists(Label.objects.filter(task=OuterRef("pk"), author=user, submitted=True)))
        .select_related("project", "inspection", "inspection__image", "inspection__station")
    )
    if order == "active":
        return candidates.order_by("-priority", "id").first()
    if order == "sequential":
        return candidates.order_by("id").first()
    bounds = candidates.aggregate(low=Min("id"), high=Max("id"))
    if bounds["low"] is None:
        return None
    pivot = (rng or random.SystemRandom()).randint(bounds["low"], bounds["high"])
    return candidates.filter(id__gte=pivot).order_by("id").first() or candidates.order_by("id").first()


def label_history_for(*, task: LabelTask, user: Any) -> QuerySet[LabelRevision]:
    """Revisions of the task's labels, newest first (at most HISTORY_LIMIT). Managers see
    everyone's; others only their own, so that k independent labels stay independent."""
    revisions = LabelRevision.objects.filter(label__task=task).select_related("author").defer("shapes").order_by("-id")
    from annotation.services.labels import shared_label

    if not shared_label(task) and role_in_project(user=user, project_id=task.project_id) not in CAN_MANAGE:
        revisions = revisions.filter(label__author=user)
    return revisions[:HISTORY_LIMIT]


def label_task_context(*, task: LabelTask, user: Any) -> dict[str, Any]:
    """What the studio shows beside a task: the caller's label, the task they labelled
    before (to copy from), the project's classes and, for managers (who adjudicate), every
    submitted label."""
    manages = role_in_project(user=user, project_id=task.project_id) in CAN_MANAGE
    return {
        "label": label_of(task=task, user=user),
        "previous_task": previous_task_of(task=task, user=user),
        "defect_classes": list(DefectClass.objects.filter(project_id=task.project_id).order_by("id")),
        # For the adjudicator only: every submitted label of the image, side by side.
        "submitted_labels": (
            list(
                Label.objects.filter(task=task, submitted=True).select_related("author").order_by("submitted_at", "id")
            )
            if manages
            else []
        ),
    }
