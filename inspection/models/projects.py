"""The tenant (Project), its people (Membership), its taxonomy and its cameras."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q


def default_shifts() -> list[dict[str, Any]]:
    """Three eight-hour shifts; ``start`` is the hour of the plant's day (``Project.time_zone``)
    when each begins."""
    return [{"name": "A", "start": 6}, {"name": "B", "start": 14}, {"name": "C", "start": 22}]


class TrainingLabels(models.TextChoices):
    SINGLE = "single"  # every submitted label (the agreed one when k > 1) enters training
    ADJUDICATED = "adjudicated"  # only labels a manager adjudicated enter training


class DriftReview(models.TextChoices):
    """Which open drift alerts send a station's parts to people (``Project.drift_review``)."""

    OFF = "off"  # alerts inform managers; routing is unchanged
    MODELS = "models"  # only alerts on what the models output (defect score, anomaly ratio)
    ANY = "any"  # any alert, the camera's brightness, contrast and sharpness included


class Project(models.Model):
    """One product inspected on one or more lines: its defect taxonomy and decision settings.

    Every other row belongs to exactly one project; a project is the unit of tenancy.
    """

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True, max_length=4000)
    good_class_name = models.CharField(max_length=60, default="good")
    # Until a model is deployed every part goes to a person (the cold start). Until the
    # deployed model is calibrated on human-labelled parts, these fixed thresholds route.
    auto_fail_threshold = models.FloatField(default=0.9)
    auto_pass_threshold = models.FloatField(default=0.1)
    # The manager's risk settings: calibrated thresholds keep these with this confidence.
    target_escape_rate = models.FloatField(default=0.005)
    target_false_reject_rate = models.FloatField(default=0.01)
    calibration_confidence = models.FloatField(default=0.9)
    # Share of automatically decided parts that people check anyway, to measure real rates.
    audit_rate = models.FloatField(default=0.02)
    # Anomaly score this many times the good parts' threshold: far from anything trained on.
    out_of_distribution_ratio = models.FloatField(default=4.0)
    # While a station has an open drift alert (its parts no longer look like those the deployed
    # models were calibrated on), send its parts to people instead of deciding them: on an alert
    # of the models' outputs, on any alert (the camera's image signals too), or never.
    drift_review = models.CharField(max_length=8, choices=DriftReview.choices, default=DriftReview.OFF)
    # The loop closing by itself: retrain each deployed classifier and anomaly detector once this
    # many human labels arrived since its newest version began training (0: only by hand), and
    # deploy a version whose comparison finds it better than what serves (``model_compare``).
    retrain_after_labels = models.PositiveIntegerField(default=0)
    promote_when_better = models.BooleanField(default=False)
    # Cameras per part: the part is decided when all its views are in; any failing view fails it.
    views_per_part = models.PositiveSmallIntegerField(default=1)
    # Chance that a reviewer's next claim is a golden (known-answer) item.
    golden_rate = models.FloatField(default=0.05)
    # The plant's shifts, for the dashboards: [{"name", "start"}] with start an hour 0-23 of
    # the plant's local day; each shift runs until the next one starts. Changing them (or the
    # time zone) re-cuts the day and shift rollups from the hour rows.
    shifts = models.JSONField(default=default_shifts)
    # The plant's IANA time zone ("Europe/Berlin"): the dashboards' days and shifts follow
    # its local clock, daylight saving time included. Hour buckets stay UTC hours.
    time_zone = models.CharField(max_length=64, default="UTC")
    # Annotation studio: independent labels wanted per image (k); with k > 1 disagreements
    # go to a manager. Which labels become training data: every submitted (or agreed) label,
    # or only a manager's adjudicated result.
    labels_per_image = models.PositiveSmallIntegerField(default=1)
    training_labels = models.CharField(max_length=12, choices=TrainingLabels.choices, default=TrainingLabels.SINGLE)
    # Days the images of parts only the models decided are kept (None: forever). Parts a person
    # decided, reviewed or labelled, golden parts and training images are kept regardless;
    # inspection rows, scores, verdicts and the audit trail are never removed.
    image_retention_days = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class DefectClass(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="defect_classes")
    name = models.CharField(max_length=60)
    color = models.CharField(max_length=7, default="#e4572e")  # #rrggbb, validated in the API
    hotkey = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="defect_class_unique_name"),
            models.UniqueConstraint(
                fields=["project", "hotkey"], condition=Q(hotkey__isnull=False), name="defect_class_unique_hotkey"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Line(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="lines")
    name = models.CharField(max_length=120)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="line_unique_name")]

    def __str__(self) -> str:
        return self.name


class Station(models.Model):
    """A camera position on a line. ``project`` is denormalised from the line for scoping."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="stations")
    line = models.ForeignKey(Line, on_delete=models.CASCADE, related_name="stations")
    name = models.CharField(max_length=120)
    is_active = models.BooleanField(default=True)
    # The part of the camera's frame the models look at: {"x", "y", "width", "height"} as
    # fractions of the image (workers.ml.regions); null = the whole frame. Set through
    # services.station_set_region, which validates and audits it.
    inspection_region = models.JSONField(null=True, blank=True)
    # Rectangles (same form, fractions of the whole image) that vary without being defects
    # (date codes, labels): blanked before the models look, zeroed in what they draw.
    ignore_zones = models.JSONField(default=list, blank=True)
    # Drift is measured against the first parts after this (set when a manager accepts the
    # station's latest parts as its new normal), after the last view change and deployment.
    drift_baseline_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["line", "name"], name="station_unique_name")]

    def __str__(self) -> str:
        return f"{self.line.name}/{self.name}"

    def view(self) -> dict[str, Any] | None:
        """What the models see of this camera's frame: None for all of it, untouched; else the
        region (None: the whole frame) and the ignore zones. Model versions record it per
        station when trained (``ModelVersion.station_regions``)."""
        if self.inspection_region is None and not self.ignore_zones:
            return None
        return {"region": self.inspection_region, "ignore_zones": list(self.ignore_zones or [])}


class StationToken(models.Model):
    """A station's credential. Only a SHA-256 of the secret is stored; ``prefix`` finds the row."""

    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="tokens")
    prefix = models.CharField(max_length=16, unique=True)
    secret_sha256 = models.CharField(max_length=64)
    label = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]


class Role(models.TextChoices):
    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"
    MANAGER = "manager"
    ADMIN = "admin"


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["user", "project"], name="membership_unique_user_project")]
