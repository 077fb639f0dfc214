"""The annotation studio's work: one task per inspected image, each annotator's label on it
(versioned, with an append-only history), skips, and a manager's adjudication."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from inspection.models import DefectClass, Inspection, Project, Verdict


class LabelTask(models.Model):
    """An image waiting for human labels. ``priority`` orders the active-learning queue:
    higher means the deployed models would learn more from it (see ``label_task_priority``)."""

    class Status(models.TextChoices):
        OPEN = "open"  # fewer submitted labels than the project's labels_per_image
        LABELLED = "labelled"  # enough labels, and they agree
        NEEDS_ADJUDICATION = "needs_adjudication"  # enough labels, and they disagree
        ADJUDICATED = "adjudicated"  # a manager decided; closed to further labels

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="label_tasks")
    inspection = models.ForeignKey(Inspection, on_delete=models.CASCADE, related_name="label_tasks")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    priority = models.FloatField(default=0.0)
    reasons = models.JSONField(default=list, blank=True)  # e.g. ["uncertain", "disagreement", "novel"]
    # Kept equal to the count of submitted labels, under the task's row lock (label_save).
    labels_submitted = models.PositiveSmallIntegerField(default=0)
    adjudicated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    adjudicated_at = models.DateTimeField(null=True, blank=True)
    adjudicated_outcome = models.CharField(max_length=4, choices=Verdict.Outcome.choices, blank=True)
    adjudicated_defect_class = models.ForeignKey(
        DefectClass, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    adjudicated_shapes = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "inspection"], name="label_task_unique_inspection"),
        ]
        indexes = [
            models.Index(fields=["project", "status", "-priority"]),
            models.Index(fields=["project", "labels_submitted"]),
        ]


class Label(models.Model):
    """One annotator's label on one task. ``version`` grows by one on every save; a save
    names the version it read, and a stale one is refused (optimistic concurrency)."""

    task = models.ForeignKey(LabelTask, on_delete=models.CASCADE, related_name="labels")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="labels")
    version = models.PositiveIntegerField(default=1)
    outcome = models.CharField(max_length=4, choices=Verdict.Outcome.choices)
    defect_class = models.ForeignKey(DefectClass, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # Validated by annotation.shapes; masks are stored packed (see annotation.masks.rle_pack).
    shapes = models.JSONField(default=list, blank=True)
    submitted = models.BooleanField(default=False)
    submitted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["task", "author"], name="label_unique_task_author")]
        indexes = [models.Index(fields=["author", "-updated_at"])]


class LabelRevision(models.Model):
    """Append-only: what one save of a label wrote."""

    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="revisions")
    version = models.PositiveIntegerField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    outcome = models.CharField(max_length=4, choices=Verdict.Outcome.choices)
    defect_class_id = models.BigIntegerField(null=True, blank=True)  # kept even if the class changes
    shapes = models.JSONField(default=list, blank=True)
    shapes_count = models.PositiveIntegerField(default=0)  # so the history never loads shapes
    submitted = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["label", "version"], name="label_revision_unique_version")]


class LabelSkip(models.Model):
    """A task someone skipped: never offered to them again by ``label-tasks/next``."""

    task = models.ForeignKey(LabelTask, on_delete=models.CASCADE, related_name="skips")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="label_skips")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["task", "user"], name="label_skip_unique_task_user")]
