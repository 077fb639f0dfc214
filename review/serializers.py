from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from inspection.models import Verdict
from inspection.serializers import StrictInputSerializer
from review.models import GoldenPart, ReviewItem


class ReviewItemOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """Shape of a review item on the API and in websocket pushes (plain text, never HTML)."""

    part = serializers.SerializerMethodField()
    image = serializers.SerializerMethodField()
    scores = serializers.SerializerMethodField()
    overlays = serializers.SerializerMethodField()
    views = serializers.SerializerMethodField()
    station = serializers.SerializerMethodField()
    sla_due_at = serializers.SerializerMethodField()
    reason = serializers.SerializerMethodField()

    class Meta:
        model = ReviewItem
        fields = [
            "id",
            "project",
            "status",
            "reason",
            "model_version",
            "part",
            "station",
            "image",
            "scores",
            "overlays",
            "views",
            "created_at",
            "sla_due_at",
            "claimed_by",
            "lease_expires_at",
            "decided_at",
        ]

    def get_reason(self, item: ReviewItem) -> str:
        """Why the part is in the queue; a golden item shows its disguise (``shown_reason``)."""
        return item.shown_reason or item.reason

    def get_part(self, item: ReviewItem) -> dict[str, Any]:
        return {"id": item.part_id, "serial": item.part.serial, "sku": item.part.sku}

    def get_station(self, item: ReviewItem) -> dict[str, Any] | None:
        if item.inspection is None:
            return None
        station = item.inspection.station
        return {"id": station.pk, "name": station.name, "line": station.line.name}

    def get_scores(self, item: ReviewItem) -> dict[str, Any]:
        """What the models said about the part, for the reviewer (numbers and flags only)."""
        if item.inspection is None:
            return {}
        scores = item.inspection.scores or {}
        keep = (
            "probabilities",
            "defect_probability",
            "anomaly_score",
            "anomaly_ratio",
            "defect_score",
            "defect_pixels",
        )
        return {key: scores[key] for key in keep if key in scores} | {
            "predicted_class": scores.get("predicted_class"),
            "flags": {k: bool(scores[k]) for k in ("classifier_flag", "anomaly_flag") if k in scores},
        }

    def get_overlays(self, item: ReviewItem) -> dict[str, str | None]:
        """URLs of the anomaly heatmap and the defect mask, where the models drew them."""
        inspection = item.inspection
        if inspection is None:
            return {"heatmap": None, "mask": None}
        return {
            "heatmap": reverse("inspection-heatmap", kwargs={"pk": inspection.pk}) if inspection.heatmap_file else None,
            "mask": reverse("inspection-mask", kwargs={"pk": inspection.pk}) if inspection.mask_file else None,
        }

    def get_views(self, item: ReviewItem) -> list[dict[str, Any]]:
        """Every camera's image of the part (a part fails if any view fails), the routed one first."""
        views = sorted(item.part.inspections.all(), key=lambda view: (view.pk != item.inspection_id, view.pk))
        return [
            {
                "inspection": view.pk,
                "station": f"{view.station.line.name} / {view.station.name}",
                "url": reverse("inspection-image", kwargs={"pk": view.pk}),
                "heatmap": reverse("inspection-heatmap", kwargs={"pk": view.pk}) if view.heatmap_file else None,
                "mask": reverse("inspection-mask", kwargs={"pk": view.pk}) if view.mask_file else None,
                "flagged": (view.scores or {}).get("decision", {}).get("action") in ("fail", "review"),
                # The inspection region the models looked at (fractions of the image), if any.
                "region": (view.scores or {}).get("region"),
                "ignore_zones": (view.scores or {}).get("ignore_zones", []),
                "width": view.image.width,
                "height": view.image.height,
            }
            for view in views[:16]
        ]

    def get_image(self, item: ReviewItem) -> dict[str, Any] | None:
        if item.inspection is None:
            return None
        image = item.inspection.image
        return {
            "inspection": item.inspection_id,
            "width": image.width,
            "height": image.height,
            "url": reverse("inspection-image", kwargs={"pk": item.inspection_id}),
        }

    def get_sla_due_at(self, item: ReviewItem) -> str:
        from datetime import timedelta

        return (item.created_at + timedelta(minutes=settings.LOUPE_REVIEW_SLA_MINUTES)).isoformat()


class ReviewDecisionInputSerializer(StrictInputSerializer):
    outcome = serializers.ChoiceField(choices=Verdict.Outcome.choices)
    defect_class = serializers.IntegerField(required=False, allow_null=True)
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    shapes = serializers.JSONField(
        required=False, allow_null=True, help_text="Corrected boxes / polygons on the image shown, in pixels."
    )


class ReviewClaimInputSerializer(StrictInputSerializer):
    project = serializers.IntegerField(required=False, help_text="Only this project's items; default all of yours.")
    exclude = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        max_length=10,
        help_text="Items not to hand back: ones the caller decided but may still undo (held in the console).",
    )


class ReviewQueueStatsSerializer(serializers.Serializer):  # type: ignore[type-arg]  # output only
    project = serializers.IntegerField()
    open = serializers.IntegerField()
    claimed = serializers.IntegerField()
    oldest_waiting_seconds = serializers.FloatField(allow_null=True)
    sla_breaches = serializers.IntegerField()


class GoldenPartInputSerializer(StrictInputSerializer):
    part = serializers.IntegerField()
    outcome = serializers.ChoiceField(choices=Verdict.Outcome.choices)
    defect_class = serializers.IntegerField(required=False, allow_null=True)


class GoldenPartOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    defect_class = serializers.CharField(source="defect_class.name", default=None)

    class Meta:
        model = GoldenPart
        fields = ["id", "project", "part", "outcome", "defect_class", "is_active", "created_at"]


class QualityQuerySerializer(StrictInputSerializer):
    project = serializers.IntegerField()
    group_by = serializers.ChoiceField(choices=["day", "line", "station"], required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
