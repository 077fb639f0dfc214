"""Writes, split by aggregate. Import from here: ``from annotation.services import ...``."""

from annotation.services.annotations import annotation_record_review_decision, training_annotation_sync
from annotation.services.label_tasks import (
    label_task_adjudicate,
    label_task_create_for,
    label_task_ensure,
    label_task_priority,
    label_task_skip,
    label_tasks_ensure,
    label_tasks_sync,
)
from annotation.services.labels import label_save

__all__ = [
    "annotation_record_review_decision",
    "label_save",
    "label_task_adjudicate",
    "label_task_create_for",
    "label_task_ensure",
    "label_task_priority",
    "label_task_skip",
    "label_tasks_ensure",
    "label_tasks_sync",
    "training_annotation_sync",
]
