"""Reads, already scoped to what the caller may see. Split by aggregate."""

from annotation.selectors.annotations import annotations_for
from annotation.selectors.assist import assist_for
from annotation.selectors.label_tasks import (
    access_label_task,
    label_history_for,
    label_of,
    label_task_context,
    label_task_next,
    label_tasks_for,
    previous_task_of,
)
from annotation.selectors.labelling_stats import labelling_stats
from annotation.selectors.prelabels import prelabels_for

__all__ = [
    "access_label_task",
    "annotations_for",
    "assist_for",
    "label_history_for",
    "label_of",
    "label_task_context",
    "label_task_next",
    "label_tasks_for",
    "labelling_stats",
    "prelabels_for",
    "previous_task_of",
]
