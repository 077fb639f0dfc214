"""Saving an annotator's label: optimistic concurrency, history, agreement, training data."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Label, LabelRevision, LabelTask
from annotation.services.annotations import training_annotation_sync
from annotation.shapes import validate_label
from inspection.errors import Conflict
from inspection.models import DefectClass


def shared_label(task: LabelTask) -> bool:
    """Single-pass projects (one label per image) edit one shared label per image: two
    annotators on the same image are two editors of one document, so the one who saves from
    a stale version gets 409 and nothing is silently lost (bad-inputs case 38). With k > 1
    each annotator has their own label, independent for the agreement measure."""
    return int(task.project.labels_per_image) == 1


def labels_of(task: LabelTask, author: Any) -> Any:
    """The label rows ``author`` edits on ``task``: the shared one, or their own."""
    return Label.objects.filter(task=task) if shared_label(task) else Label.objects.filter(task=task, author=author)


def _stale(task: LabelTask, author: Any) -> Conflict:
    from annotation.serializers import LabelOutputSerializer  # shapes the state, writes nothing

    current = labels_of(task, author).first()
    return Conflict(
        "This label was saved elsewhere since you loaded it (another tab or device); "
        "reload it, or save again with its current version.",
        code="stale_version",
        extra={"current": LabelOutputSerializer(current).data if current else None},
    )


def label_save(
    *, task: LabelTask, author: Any, version: int, outcome: Any, defect_class: Any, shapes: Any, submit: bool
) -> Label:
    """Write ``author``'s label on ``task`` if ``version`` is the one stored (0: none yet).

    Compare-and-set in one statement (``UPDATE ... WHERE version = N``), so of two saves made
    from the same version exactly one wins and the other gets Conflict ``stale_version`` with
    the stored label, and nothing is written for it. Every successful save appends a
    LabelRevision. ``submit`` marks the label submitted; a submitted label stays submitted
    (later saves edit it). Once submitted, the task's count, status (open / labelled /
    needs_adjudication) and training label are brought up to date under the task's lock.
    An adjudicated task takes no more labels (Conflict ``task_closed``).
    """
    image = task.inspection.image
    class_ids = set(DefectClass.objects.filter(project_id=task.project_id).values_list("id", flat=True))
    body = validate_label(
        outcome=outcome, defect_class=defect_class, shapes=shapes,
        width=image.width, height=image.height, class_ids=class_ids,
    )  # fmt: skip
    if task.status == LabelTask.Status.ADJUDICATED:
        raise Conflict("A manager adjudicated this image; its labels are closed.", code="task_closed")
    now = timezone.now()
    with transaction.atomic():
        if version == 0:
            if shared_label(task):
                # One label per image: the first save creates it under the task's row lock;
                # any other first save, by anyone, finds it and is stale.
                LabelTask.objects.select_for_update(of=("self",)).filter(pk=task.pk).first()
                if Label.objects.filter(task=task).exists():
                    raise _stale(task, author)
            try:
                with transaction.atomic():  # a savepoint: the unique (task, author) may refuse it
                    label = Label.objects.create(
                        task=task,
                        author=author,
                        version=1,
                        outcome=body.outcome,
                        defect_class_id=body.defect_class_id,
                        shapes=body.shapes,
                        submitted=submit,
                        submitted_at=now if submit else None,
                    )
            except IntegrityError:
                raise _stale(task, author) from None
        else:
            changes: dict[str, Any] = {
                "version": F("version") + 1,
                "outcome": body.outcome,
                "defect_class_id": body.defect_class_id,
                "shapes": body.shapes,
                "updated_at": now,
            }
            if submit:
                changes.update(submitted=True, submitted_at=Coalesce(F("submitted_at"), Value(now)))
            if shared_label(task):
                changes["author"] = author  # the shared label is by whoever saved it last
            # The compare-and-set; on PostgreSQL a concurrent save of the same version waits for
            # this row lock, then finds version N + 1 and updates nothing.
            if not labels_of(task, author).filter(version=version).update(**changes):
                raise _stale(task, author)
            label = labels_of(task, author).get()
        LabelRevision.objects.create(
            label=label,
            version=label.version,
            author=author,
            outcome=label.outcome,
            defect_class_id=label.defect_class_id,
            shapes=label.shapes,
            shapes_count=len(label.shapes),
            submitted=label.submitted,
        )
        if label.submitted:
            _task_settle(task_id=task.pk)
    return label


def _task_settle(*, task_id: int) -> LabelTask:
    """Recount submitted labels and set the task's status and training label. Takes the
    task's row lock, so settlements (and adjudication) of one task run one at a time."""
    task = (
        LabelTask.objects.select_for_update(of=("self",))
        .select_related("project", "inspection", "inspection__image")
        .get(pk=task_id)
    )
    submitted = list(Label.objects.filter(task=task, submitted=True).order_by("submitted_at", "id"))
    task.labels_submitted = len(submitted)
    if task.status != LabelTask.Status.ADJUDICATED:
        if len(submitted) < task.project.labels_per_image:
            task.status = LabelTask.Status.OPEN
        elif len({(label.outcome, label.defect_class_id) for label in submitted}) == 1:
            task.status = LabelTask.Status.LABELLED
        else:
            task.status = LabelTask.Status.NEEDS_ADJUDICATION
    task.save(update_fields=["labels_submitted", "status"])
    training_annotation_sync(task=task, submitted=submitted)
    return task
