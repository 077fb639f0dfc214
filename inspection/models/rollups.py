"""Counters the manager dashboards read, kept current as final verdicts arrive.

Each final verdict adds one to the buckets of its part's production hour and day (the
``captured_at`` of the verdict's inspection, truncated in UTC) for the station that took
that image and the part's SKU. The dashboards read these tables only, never the
inspection or verdict tables, so a chart costs the same at ten thousand parts as at ten
million (bad-inputs case 39). ``inspection.services.rollups`` writes them; ``rollups_rebuild``
recomputes them from the verdicts.

Three periods are kept: ``hour`` rows serve short ranges, ``day`` rows serve long ones with
24 times fewer rows to add up, and ``shift`` rows (bucket = the moment a shift began, per
``Project.shifts``) serve the breakdown by shift over long ranges. Shift rows are derived
from the hour rows again whenever the project's shifts change.
"""

from __future__ import annotations

from django.db import models

from inspection.models.projects import DefectClass, Project, Station


class Period(models.TextChoices):
    HOUR = "hour"
    DAY = "day"
    SHIFT = "shift"


class YieldRollup(models.Model):
    """Decided parts of one station and SKU in one hour or day, by how they were decided."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="+")
    sku = models.CharField(max_length=128, blank=True)
    period = models.CharField(max_length=5, choices=Period.choices)
    bucket = models.DateTimeField()  # start of the hour, day or shift, UTC
    parts_decided = models.PositiveIntegerField(default=0)
    passed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    auto_passed = models.PositiveIntegerField(default=0)  # final verdict from the models
    auto_failed = models.PositiveIntegerField(default=0)
    human_passed = models.PositiveIntegerField(default=0)  # final verdict from a reviewer
    human_failed = models.PositiveIntegerField(default=0)
    # Audit samples: parts the models would have decided alone, checked by a person anyway.
    audited_auto_passes = models.PositiveIntegerField(default=0)
    escapes = models.PositiveIntegerField(default=0)  # ... the models would pass, the person failed
    audited_auto_fails = models.PositiveIntegerField(default=0)
    false_rejects = models.PositiveIntegerField(default=0)  # ... the models would fail, the person passed

    class Meta:
        ordering = ["bucket", "id"]
        constraints = [
            # The upsert's conflict target; its leading columns also serve every dashboard
            # query (one project, one period, a range of buckets).
            models.UniqueConstraint(
                fields=["project", "period", "bucket", "station", "sku"], name="yield_rollup_unique_bucket"
            ),
        ]


class DefectRollup(models.Model):
    """Failed parts of one station, SKU and defect class in one hour or day (the Pareto)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="+")
    sku = models.CharField(max_length=128, blank=True)
    period = models.CharField(max_length=5, choices=Period.choices)
    bucket = models.DateTimeField()
    defect_class = models.ForeignKey(DefectClass, on_delete=models.CASCADE, related_name="+")
    failed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["bucket", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "period", "bucket", "station", "sku", "defect_class"],
                name="defect_rollup_unique_bucket",
            ),
        ]
