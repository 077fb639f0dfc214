from __future__ import annotations

from django.conf import settings
from django.db import models

from inspection.models import DefectClass, Image, Part, Project, Verdict


class Annotation(models.Model):
    """A label on one image of a part. ``source`` and the links say where it came from."""

    class Source(models.TextChoices):
        REVIEW = "review"  # a reviewer's decision on a routed part
        ANNOTATOR = "annotator"  # labelled in the annotation studio
        IMPORT = "import"  # brought in with a dataset

    Outcome = Verdict.Outcome  # one pass/fail vocabulary across verdicts and labels

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="annotations")
    part = models.ForeignKey(Part, on_delete=models.CASCADE, null=True, blank=True, related_name="annotations")
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="annotations")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    review_item = models.ForeignKey(
        "review.ReviewItem", on_delete=models.SET_NULL, null=True, blank=True, related_name="annotations"
    )
    # Studio labels: the task whose agreed or adjudicated label this is (one per task).
    label_task = models.OneToOneField(
        "annotation.LabelTask",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="training_annotation",
    )
    outcome = models.CharField(max_length=4, choices=Outcome.choices)
    defect_class = models.ForeignKey(DefectClass, on_delete=models.PROTECT, null=True, blank=True)
    shapes = models.JSONField(default=list, blank=True)  # boxes/polygons in image pixels
    comment = models.TextField(blank=True, max_length=2000)
    model_version = models.CharField(max_length=64, blank=True)  # the model output shown, if any
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "created_at"])]
