from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from inspection.models import Inspection, Part, Project


class ReviewItem(models.Model):
    """A part waiting for a human decision, with the reason it was routed to people."""

    class Status(models.TextChoices):
        OPEN = "open"
        CLAIMED = "claimed"
        DECIDED = "decided"

    class Reason(models.TextChoices):
        COLD_START = "cold_start", "No deployed model"
        UNCERTAIN = "uncertain", "Model unsure"
        MODEL_ERROR = "model_error", "Model could not run"
        DISAGREEMENT = "disagreement", "Classifier and anomaly detector disagree"
        OUT_OF_DISTRIBUTION = "out_of_distribution", "Unlike anything trained on"
        AUDIT_SAMPLE = "audit_sample", "Random audit of an automatic decision"
        GOLDEN = "golden", "Known answer, measuring the reviewer"
        REGION_CHANGED = "region_changed", "Station's inspection region changed since the models were trained"
        DRIFT = "drift", "Station drifting since the models were deployed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="review_items")
    part = models.ForeignKey(Part, on_delete=models.CASCADE, related_name="review_items")
    inspection = models.ForeignKey(Inspection, on_delete=models.SET_NULL, null=True, related_name="review_items")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    model_version = models.CharField(max_length=64, blank=True)  # what the reviewer was shown
    # For audit samples: what the models would have decided alone ("pass" / "fail").
    model_decision = models.CharField(max_length=4, blank=True)
    # The part came to people whatever its scores: drawn at random (at the project's audit
    # rate, whatever the models said), or every part did (no deployed models, or thresholds
    # that cannot decide any). Only such parts are a fair sample of the line for fitting the
    # project's thresholds: the others were picked for their scores (``routing.fair_parts``).
    sampled = models.BooleanField(default=False)
    # Golden items re-show a part whose answer is known; they score the reviewer and never
    # change the part's verdict.
    golden = models.ForeignKey("review.GoldenPart", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    golden_correct = models.BooleanField(null=True, blank=True)
    # What a reviewer is told about a golden item: the reason its part was first routed (or
    # an audit), so a known-answer item cannot be told from the rest of the queue.
    shown_reason = models.CharField(max_length=32, choices=Reason.choices, blank=True)
    decided_outcome = models.CharField(max_length=4, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["part"],
                condition=Q(status__in=["open", "claimed"], golden__isnull=True),
                name="review_one_open_item_per_part",
            ),
        ]
        indexes = [models.Index(fields=["project", "status", "created_at"])]


class GoldenPart(models.Model):
    """A part whose right answer a manager has fixed; slipped into reviewers' queues."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="golden_parts")
    part = models.OneToOneField(Part, on_delete=models.CASCADE, related_name="golden")
    outcome = models.CharField(max_length=4)
    defect_class = models.ForeignKey("inspection.DefectClass", on_delete=models.PROTECT, null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
