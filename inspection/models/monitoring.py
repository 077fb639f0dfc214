"""Drift alerts: a station whose parts, as the deployed models see them, no longer look like
the parts those models first scored there (``workers.routing.drift``)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from inspection.models.projects import Project, Station


class DriftAlert(models.Model):
    """Opened when a watched signal of a station reaches the "drift" level against the deployed
    set's reference window, closed when it falls back (or another set is deployed). One open
    alert per station, signal and deployed set; opening and closing are audited."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="drift_alerts")
    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="drift_alerts")
    model_version = models.CharField(max_length=64)  # the deployed set's serving label
    signal = models.CharField(max_length=32)  # a key of workers.routing.drift.SIGNALS
    psi = models.FloatField()  # when opened
    p_value = models.FloatField()
    reference_mean = models.FloatField()
    current_mean = models.FloatField()
    latest_psi = models.FloatField()  # at the latest check while open
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["station", "signal", "model_version"],
                condition=Q(closed_at__isnull=True),
                name="drift_alert_one_open",
            )
        ]
        indexes = [models.Index(fields=["project", "closed_at"])]
