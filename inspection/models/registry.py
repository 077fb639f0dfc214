"""The model registry: every trained model, what it was trained on, and which one serves."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import Q

from inspection.models.projects import Project

INT8_ARTIFACT = "model.int8.onnx"  # workers.ml.training.ONNX_INT8_NAME


class Precision(models.TextChoices):
    FP32 = "fp32"
    INT8 = "int8"


class ModelVersion(models.Model):
    """One training run of one model kind for one project, and its artifacts.

    ``artifacts`` maps each file name to its SHA-256; files are loaded only from this
    version's own directory and only when every hash matches. At most one version per
    (project, kind) is deployed.
    """

    class Kind(models.TextChoices):
        CLASSIFIER = "classifier"
        ANOMALY = "anomaly"
        SEGMENTER = "segmenter"

    class Status(models.TextChoices):
        TRAINING = "training"
        READY = "ready"
        DEPLOYED = "deployed"
        RETIRED = "retired"
        FAILED = "failed"
        CANCELLED = "cancelled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.TRAINING)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    # The exact training data: annotation ids (each names its image), and the seed of the split.
    training_data = models.JSONField(default=dict, blank=True)
    hyperparameters = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    thresholds = models.JSONField(default=dict, blank=True)
    artifacts = models.JSONField(default=dict, blank=True)  # file name -> sha256
    # Each station's inspection region when the job was queued ({station id: region or null}):
    # a station whose region differs now sends its parts to people (routing: region_changed).
    station_regions = models.JSONField(default=dict, blank=True)
    progress = models.JSONField(default=dict, blank=True)  # epoch, epochs, loss, metric, history
    # Against the set serving when it was compared, on the same audited parts: what each would
    # send to people at the project's targets (``model_compare.model_version_compare``).
    comparison = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deployed_at = models.DateTimeField(null=True, blank=True)
    # What inference workers serve once deployed: the fp32 model, or the INT8 one the classifier
    # trainer quantizes (its accuracy cost on the validation split is in ``metrics``).
    precision = models.CharField(max_length=8, choices=Precision.choices, default=Precision.FP32)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "kind"], condition=Q(status="deployed"), name="model_version_one_deployed_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.pk}"

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.pk}"

    @property
    def serving_label(self) -> str:
        """What parts were scored by: the label, marked when the INT8 model serves (its scores
        differ a little from fp32, so it is calibrated on its own)."""
        return self.label if self.precision == Precision.FP32 else f"{self.label}/{self.precision}"

    @property
    def has_int8(self) -> bool:
        return INT8_ARTIFACT in (self.artifacts or {})

    @property
    def artifact_dir(self) -> Path:
        """Server-generated location; never taken from user input."""
        return Path(settings.VAR_DIR) / "models" / f"project-{self.project_id}" / f"version-{self.pk}"


class CalibrationScore(models.Model):
    """A human-decided part's image scored again by a newly deployed model set, so that the new
    set is calibrated at once on the parts people already decided instead of sending every part
    to review until it has served enough of its own (``routing.calibration_rescore``).

    With a ``view_key``: scored through a station's new view (inspection region and ignore
    zones) that the deployed models never learnt, for that station's own calibration
    (``routing.calibration_rescore_view``)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="calibration_scores")
    model_version = models.CharField(max_length=64)  # the deployed set's serving label
    inspection = models.ForeignKey("inspection.Inspection", on_delete=models.CASCADE, related_name="+")
    view_key = models.CharField(max_length=16, blank=True, default="")  # "": the view the set learnt
    defect_score = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "inspection", "view_key"], name="calibration_score_unique_per_view"
            ),
        ]
        indexes = [models.Index(fields=["project", "model_version"])]


class Calibration(models.Model):
    """Thresholds fitted for one deployed model set on the project's human-labelled parts.

    With a ``station``: fitted on that station's parts only, scored through its current view
    (``view_key``) that the deployed models did not learn; its thresholds let the models decide
    that station's parts again before they are retrained (``routing.calibration_run``).

    With a station and ``drift_since``: fitted on the parts that station sent to people since
    its drift alert opened (``drift_review``), as the deployed models scored them live; its
    thresholds let the models decide the drifted station's parts again (``routing.calibration_run``)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="calibrations")
    model_version = models.CharField(max_length=64)  # the deployed set it was fitted for
    station = models.ForeignKey(
        "inspection.Station", null=True, blank=True, on_delete=models.CASCADE, related_name="view_calibrations"
    )
    view_key = models.CharField(max_length=16, blank=True, default="")  # with station: its view's key
    drift_since = models.DateTimeField(null=True, blank=True)  # with station: the drift episode it is for
    # The project's fit: on its fair sample decided from then on only, because the latest parts
    # showed the thresholds breaking a target (the line changed under the models); later fits
    # keep to it (``routing.calibration_run``, ``workers.routing.calibration.calibrate_recent``).
    sample_since = models.DateTimeField(null=True, blank=True)
    parts = models.PositiveIntegerField()  # calibration parts used
    target_escape_rate = models.FloatField()
    target_false_reject_rate = models.FloatField()
    confidence = models.FloatField()
    t_pass = models.FloatField()  # auto-pass when defect score <= t_pass
    t_fail = models.FloatField()  # auto-fail when defect score >= t_fail
    expected_review_rate = models.FloatField()
    escape_rate = models.FloatField()  # empirical, on the calibration parts
    false_reject_rate = models.FloatField()
    curve = models.JSONField(default=list)  # [{target_escape, review_rate, escape_rate, t_pass, t_fail}]
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "model_version", "-id"])]
