"""Serializers validate input and shape output; they never write."""

from __future__ import annotations

from typing import Any, cast

from django.urls import reverse
from rest_framework import serializers

from inspection.models import (
    AuditEvent,
    Calibration,
    DefectClass,
    DriftReview,
    Inspection,
    Membership,
    ModelVersion,
    Part,
    Project,
    Station,
    StationToken,
    TrainingLabels,
    Verdict,
    Webhook,
    WebhookDelivery,
)
from inspection.plant_time import known_time_zones
from inspection.selectors import final_verdict_of, station_models_view


class StrictInputSerializer(serializers.Serializer):  # type: ignore[type-arg]  # DRF generic default
    """Refuses fields it does not declare, or declares read-only, instead of dropping them.

    A PATCH that tries to move an object to another project is a 400 with nothing changed
    (bad-inputs case 2), not a silent 200.
    """

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "keys"):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data.keys()) - writable)
            if unknown:
                raise serializers.ValidationError({name: "This field cannot be set." for name in unknown})
        return super().to_internal_value(data)


_SERIAL = r"^[\w.\-/:#]+$"


class InspectionCreateInputSerializer(StrictInputSerializer):
    image = serializers.FileField(allow_empty_file=True, use_url=False, required=False)
    upload = serializers.UUIDField(required=False, help_text="A completed resumable upload, instead of image.")
    part_serial = serializers.RegexField(_SERIAL, max_length=128)
    sku = serializers.RegexField(_SERIAL, max_length=128, required=False, default="")
    lot = serializers.RegexField(_SERIAL, max_length=128, required=False, default="")
    captured_at = serializers.DateTimeField(required=False)
    station = serializers.IntegerField(required=False, help_text="Optional; must be the token's own station.")
    idempotency_key = serializers.RegexField(r"^[\w\-.:]+$", max_length=128, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("image" in attrs) == ("upload" in attrs):
            raise serializers.ValidationError({"image": "Send exactly one of image or upload."})
        return attrs


class DefectClassOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = DefectClass
        fields = ["id", "project", "name", "color", "hotkey"]


class DefectClassCreateInputSerializer(StrictInputSerializer):
    project = serializers.IntegerField()
    # Any text: stored as text and only ever rendered as text (bad-inputs case 20).
    name = serializers.CharField(min_length=1, max_length=60, trim_whitespace=False)
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False, default="#e4572e", help_text="#rrggbb")
    hotkey = serializers.IntegerField(min_value=1, max_value=9, required=False, allow_null=True, default=None)

    def validate_name(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("A defect class needs a name.")
        return value

    def validate_color(self, value: str) -> str:
        return value.lower()


class DefectClassUpdateInputSerializer(DefectClassCreateInputSerializer):
    project = None  # type: ignore[assignment]  # a class never moves to another project
    name = serializers.CharField(min_length=1, max_length=60, trim_whitespace=False, required=False)
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False, help_text="#rrggbb")
    hotkey = serializers.IntegerField(min_value=1, max_value=9, required=False, allow_null=True)


class VerdictOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    defect_class = serializers.CharField(source="defect_class.name", default=None)
    decided_by = serializers.CharField(source="decided_by.username", default=None)

    class Meta:
        model = Verdict
        fields = [
            "id", "project", "part", "outcome", "defect_class", "source", "decided_by", "model_version", "created_at",
        ]  # fmt: skip


class PartOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    final_verdict = serializers.SerializerMethodField()

    class Meta:
        model = Part
        fields = ["id", "project", "serial", "sku", "lot", "created_at", "final_verdict"]

    def get_final_verdict(self, part: Part) -> dict[str, Any] | None:
        verdict = final_verdict_of(part=part)
        return VerdictOutputSerializer(verdict).data if verdict else None


class InspectionOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    part = serializers.SerializerMethodField()
    station = serializers.SerializerMethodField()
    image = serializers.SerializerMethodField()
    verdict = serializers.SerializerMethodField()

    class Meta:
        model = Inspection
        fields = [
            "id",
            "project",
            "status",
            "part",
            "station",
            "image",
            "captured_at",
            "received_at",
            "finished_at",
            "model_version",
            "scores",
            "latency_ms",
            "verdict",
        ]

    def get_part(self, inspection: Inspection) -> dict[str, Any]:
        return {
            "id": inspection.part_id,
            "serial": inspection.part.serial,
            "sku": inspection.part.sku,
            "lot": inspection.part.lot,
        }

    def get_station(self, inspection: Inspection) -> dict[str, Any]:
        station = inspection.station
        return {"id": station.pk, "name": station.name, "line": station.line.name}

    def get_image(self, inspection: Inspection) -> dict[str, Any]:
        image = inspection.image
        return {
            "width": image.width,
            "height": image.height,
            "url": reverse("inspection-image", kwargs={"pk": inspection.pk}),
        }

    def get_verdict(self, inspection: Inspection) -> dict[str, Any] | None:
        verdict = final_verdict_of(part=inspection.part)
        return VerdictOutputSerializer(verdict).data if verdict else None


class ProjectOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    defect_classes = DefectClassOutputSerializer(many=True, read_only=True)

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "description",
            "good_class_name",
            "auto_pass_threshold",
            "auto_fail_threshold",
            "target_escape_rate",
            "target_false_reject_rate",
            "calibration_confidence",
            "audit_rate",
            "out_of_distribution_ratio",
            "drift_review",
            "retrain_after_labels",
            "promote_when_better",
            "views_per_part",
            "shifts",
            "time_zone",
            "labels_per_image",
            "training_labels",
            "image_retention_days",
            "defect_classes",
            "created_at",
        ]


class DriftReviewField(serializers.ChoiceField):
    """``drift_review``'s modes; the booleans it was before them still work: true is "any" (what
    true did), false is "off"."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool):
            return DriftReview.ANY if data else DriftReview.OFF
        return super().to_internal_value(data)


class ProjectUpdateInputSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=120, required=False)
    description = serializers.CharField(max_length=4000, required=False, allow_blank=True)
    auto_pass_threshold = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    auto_fail_threshold = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    target_escape_rate = serializers.FloatField(min_value=0.0001, max_value=0.5, required=False)
    target_false_reject_rate = serializers.FloatField(min_value=0.0001, max_value=0.5, required=False)
    calibration_confidence = serializers.FloatField(min_value=0.5, max_value=0.999, required=False)
    audit_rate = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    out_of_distribution_ratio = serializers.FloatField(min_value=1.0, max_value=100.0, required=False)
    drift_review = DriftReviewField(
        choices=DriftReview.choices,
        required=False,
        help_text="Send a station's parts to people while it has an open drift alert: off; models (an alert on "
        "the defect score or anomaly ratio, a change that moved the models); any (the camera's brightness, contrast "
        "or sharpness too). true and false, from before the modes, mean any and off.",
    )
    retrain_after_labels = serializers.IntegerField(
        min_value=0,
        max_value=1_000_000,
        required=False,
        help_text="Retrain each deployed classifier and anomaly detector once this many human labels arrived since "
        "its newest version began training; 0: only by hand.",
    )
    promote_when_better = serializers.BooleanField(
        required=False,
        help_text="Deploy a trained version at once when its comparison with the serving models finds it better "
        "(fewer parts to people at the project's targets, on the same audited parts).",
    )
    views_per_part = serializers.IntegerField(min_value=1, max_value=32, required=False)
    labels_per_image = serializers.IntegerField(
        min_value=1, max_value=5, required=False, help_text="Independent labels wanted per image (k)."
    )
    training_labels = serializers.ChoiceField(
        choices=TrainingLabels.choices,
        required=False,
        help_text="single: submitted (agreed) labels train; adjudicated: only a manager's adjudication.",
    )
    image_retention_days = serializers.IntegerField(
        min_value=1,
        max_value=36500,
        required=False,
        allow_null=True,
        help_text="Days the images of parts only the models decided are kept; null keeps them forever. "
        "Images of parts people decided, reviewed or labelled, golden parts and training images are always kept.",
    )
    shifts = serializers.ListField(
        child=serializers.DictField(),
        min_length=1,
        max_length=24,
        required=False,
        help_text='The plant\'s shifts for the dashboards: [{"name": "A", "start": 6}, ...], start an hour 0-23 '
        "of the plant's local day (time_zone).",
    )
    time_zone = serializers.CharField(
        max_length=64,
        required=False,
        help_text='The plant\'s IANA time zone, e.g. "Europe/Berlin": days and shifts on the dashboards follow it.',
    )

    def validate_time_zone(self, value: str) -> str:
        if value not in known_time_zones():
            raise serializers.ValidationError(
                f'Unknown time zone {value[:64]!r}: use an IANA name such as "Europe/Berlin" or "UTC".'
            )
        return value

    def validate_shifts(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        shifts = []
        for shift in value:
            name, start = shift.get("name"), shift.get("start")
            if set(shift) != {"name", "start"} or not isinstance(name, str) or not 1 <= len(name.strip()) <= 40:
                raise serializers.ValidationError('Each shift is {"name": text of 1-40 characters, "start": hour}.')
            if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start <= 23:
                raise serializers.ValidationError("A shift starts at a whole hour from 0 to 23 (plant time).")
            shifts.append({"name": name.strip(), "start": start})
        if len({shift["name"] for shift in shifts}) != len(shifts):
            raise serializers.ValidationError("Shift names must differ.")
        if len({shift["start"] for shift in shifts}) != len(shifts):
            raise serializers.ValidationError("Two shifts cannot start at the same hour.")
        return sorted(shifts, key=lambda shift: shift["start"])


class MembershipOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    username = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ["id", "project", "user", "username", "role", "created_at"]


class MembershipUpdateInputSerializer(StrictInputSerializer):
    role = serializers.ChoiceField(choices=[choice[0] for choice in Membership._meta.get_field("role").choices or []])


class StationOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    line = serializers.CharField(source="line.name")
    line_id = serializers.IntegerField(read_only=True)
    models_view = serializers.SerializerMethodField(
        help_text="learnt: whether the deployed models were trained on the station's current view "
        "(null: none deployed); if not, calibration: the thresholds fitted on its decided parts "
        "through that view (null: none yet, so its parts go to people)"
    )

    class Meta:
        model = Station
        fields = [
            "id", "project", "line", "line_id", "name", "is_active", "inspection_region", "ignore_zones", "models_view",
        ]  # fmt: skip

    def get_models_view(self, station: Station) -> dict[str, Any]:
        # One read of the deployed models per project for a whole page of stations.
        deployed: dict[int, list[ModelVersion]] = cast(dict[str, Any], self.context).setdefault(
            "deployed_by_project", {}
        )
        if station.project_id not in deployed:
            deployed[station.project_id] = list(
                ModelVersion.objects.filter(project_id=station.project_id, status=ModelVersion.Status.DEPLOYED)
            )
        return station_models_view(station=station, deployed=deployed[station.project_id])


class StationCreateInputSerializer(StrictInputSerializer):
    project = serializers.IntegerField()
    line = serializers.CharField(max_length=120)
    name = serializers.CharField(max_length=120)


class StationUpdateInputSerializer(StrictInputSerializer):
    inspection_region = serializers.JSONField(
        allow_null=True,
        required=False,
        help_text='{"x", "y", "width", "height"} as fractions of the image (0-1); null: the whole image',
    )
    ignore_zones = serializers.JSONField(
        required=False,
        help_text="up to 16 rectangles like inspection_region, in fractions of the whole image; [] for none",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Send inspection_region, ignore_zones or both.")
        return attrs


class StationTokenOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = StationToken
        fields = ["id", "station", "prefix", "label", "created_at", "expires_at", "revoked_at", "last_used_at"]


class StationTokenCreateInputSerializer(StrictInputSerializer):
    description = serializers.CharField(max_length=120, required=False, default="", help_text="e.g. camera serial")
    ttl_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)


class LoginInputSerializer(StrictInputSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=256, trim_whitespace=False)


class ModelVersionOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    author = serializers.CharField(source="author.username", default=None)
    training_images = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "project",
            "kind",
            "status",
            "author",
            "training_images",
            "hyperparameters",
            "metrics",
            "thresholds",
            "artifacts",
            "progress",
            "cancel_requested",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "deployed_at",
            "precision",
            "comparison",
        ]

    def get_training_images(self, version: ModelVersion) -> int:
        return len(version.training_data.get("annotations", []))


class TrainingStartInputSerializer(StrictInputSerializer):
    project = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ModelVersion.Kind.choices)
    hyperparameters = serializers.DictField(required=False, default=dict)

    def validate_hyperparameters(self, value: dict[str, Any]) -> dict[str, Any]:
        allowed = {
            "epochs", "batch_size", "learning_rate", "head_lr_multiplier", "weight_decay", "input_size", "patience",
            "val_fraction", "target_false_reject", "max_minutes", "augment", "int8", "bank_size", "taps", "head",
            "views", "input_size_with_defect_bank",
        }  # fmt: skip
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise serializers.ValidationError(f"Unknown hyperparameter(s): {', '.join(unknown)}.")
        if "head" in value and value["head"] not in {"patch", "global"}:
            raise serializers.ValidationError("head must be 'patch' or 'global'.")
        return value


class AuditEventOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = AuditEvent
        fields = ["id", "project", "created_at", "actor_label", "action", "object_type", "object_id", "before", "after"]


class WebhookOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Webhook
        fields = ["id", "project", "url", "is_active", "created_at"]


class WebhookCreateInputSerializer(StrictInputSerializer):
    project = serializers.IntegerField()
    url = serializers.URLField(max_length=500)


class WebhookDeliveryOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = WebhookDelivery
        fields = ["id", "webhook", "verdict", "status", "attempts", "response_code", "error", "created_at",
                  "last_attempt_at", "delivered_at"]  # fmt: skip


class CalibrationOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Calibration
        fields = [
            "id", "model_version", "parts", "target_escape_rate", "target_false_reject_rate", "confidence",
            "t_pass", "t_fail", "expected_review_rate", "escape_rate", "false_reject_rate", "curve", "created_at",
            "sample_since",
        ]  # fmt: skip


class ModelVersionDeployInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    precision = serializers.ChoiceField(choices=["fp32", "int8"], default="fp32")
    # Deploy a version its comparison found worse than the serving set (audited).
    force = serializers.BooleanField(default=False)
