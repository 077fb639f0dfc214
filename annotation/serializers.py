from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from annotation.masks import api_shapes
from annotation.models import Annotation, Label, LabelRevision, LabelTask
from inspection.models import DefectClass, Verdict
from inspection.serializers import StrictInputSerializer


class AnnotationOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    defect_class = serializers.CharField(source="defect_class.name", default=None)
    author = serializers.CharField(source="author.username", default=None)

    class Meta:
        model = Annotation
        fields = [
            "id",
            "project",
            "part",
            "image",
            "author",
            "source",
            "review_item",
            "outcome",
            "defect_class",
            "shapes",
            "comment",
            "model_version",
            "created_at",
        ]


# --- annotation studio ------------------------------------------------------------------


class LabelOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    defect_class = serializers.IntegerField(source="defect_class_id", allow_null=True)
    shapes = serializers.SerializerMethodField()

    class Meta:
        model = Label
        fields = ["id", "version", "outcome", "defect_class", "shapes", "submitted", "updated_at"]

    def get_shapes(self, label: Label) -> list[dict[str, Any]]:
        return api_shapes(label.shapes)


class LabelTaskOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    labels_required = serializers.IntegerField(source="project.labels_per_image")
    image = serializers.SerializerMethodField()

    class Meta:
        model = LabelTask
        fields = ["id", "project", "inspection", "status", "priority", "reasons", "labels_submitted",
                  "labels_required", "image"]  # fmt: skip

    @extend_schema_field(
        inline_serializer(
            "LabelTaskImage",
            {
                "width": serializers.IntegerField(),
                "height": serializers.IntegerField(),
                "url": serializers.CharField(),
                "tiles": serializers.CharField(),
            },
        )
    )
    def get_image(self, task: LabelTask) -> dict[str, Any]:
        image = task.inspection.image
        return {
            "width": image.width,
            "height": image.height,
            "url": reverse("inspection-image", kwargs={"pk": task.inspection_id}),
            "tiles": reverse("inspection-tiles", kwargs={"pk": task.inspection_id}),
            # The station's inspection region (fractions of the image): training sees only this part.
            "region": task.inspection.station.inspection_region,
            "ignore_zones": task.inspection.station.ignore_zones,
        }


class LabelTaskDefectClassSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = DefectClass
        fields = ["id", "name", "color", "hotkey"]


class AdjudicationOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    outcome = serializers.CharField(source="adjudicated_outcome")
    defect_class = serializers.IntegerField(source="adjudicated_defect_class_id", allow_null=True)
    shapes = serializers.SerializerMethodField()
    by = serializers.CharField(source="adjudicated_by.username", default=None)
    at = serializers.DateTimeField(source="adjudicated_at")

    def get_shapes(self, task: LabelTask) -> list[dict[str, Any]]:
        return api_shapes(task.adjudicated_shapes)


class SubmittedLabelSerializer(LabelOutputSerializer):
    author = serializers.CharField(source="author.username")

    class Meta(LabelOutputSerializer.Meta):
        fields = [*LabelOutputSerializer.Meta.fields, "author", "submitted_at"]


class LabelTaskDetailOutputSerializer(LabelTaskOutputSerializer):
    """A task as its annotator works on it. Context: ``label`` (the caller's, or None),
    ``previous_task`` (id or None), ``defect_classes`` (the project's)."""

    # The metaclass moves declared fields off the class, so this does not shadow Field.label.
    label = serializers.SerializerMethodField()  # type: ignore[assignment]
    previous_task = serializers.SerializerMethodField()
    defect_classes = serializers.SerializerMethodField()
    adjudication = serializers.SerializerMethodField()
    submitted_labels = serializers.SerializerMethodField()

    class Meta(LabelTaskOutputSerializer.Meta):
        fields = [
            *LabelTaskOutputSerializer.Meta.fields,
            "label", "previous_task", "defect_classes", "adjudication", "submitted_labels",
        ]  # fmt: skip

    @extend_schema_field(LabelOutputSerializer(allow_null=True))
    def get_label(self, task: LabelTask) -> dict[str, Any] | None:
        label = self.context.get("label")
        return LabelOutputSerializer(label).data if label is not None else None

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_previous_task(self, task: LabelTask) -> int | None:
        return self.context.get("previous_task")

    @extend_schema_field(LabelTaskDefectClassSerializer(many=True))
    def get_defect_classes(self, task: LabelTask) -> list[dict[str, Any]]:
        return LabelTaskDefectClassSerializer(self.context.get("defect_classes", []), many=True).data  # type: ignore[return-value]

    @extend_schema_field(SubmittedLabelSerializer(many=True))
    def get_submitted_labels(self, task: LabelTask) -> list[dict[str, Any]]:
        """Managers: every submitted label of the image, to adjudicate; others: empty."""
        return SubmittedLabelSerializer(self.context.get("submitted_labels", []), many=True).data  # type: ignore[return-value]

    @extend_schema_field(AdjudicationOutputSerializer(allow_null=True))
    def get_adjudication(self, task: LabelTask) -> dict[str, Any] | None:
        if task.status != LabelTask.Status.ADJUDICATED:
            return None
        return AdjudicationOutputSerializer(task).data


@extend_schema_field(OpenApiTypes.ANY)
class ParsedJSONField(serializers.Field):  # type: ignore[type-arg]  # any JSON value
    """Takes the already parsed (and bounded, see ``LabelJSONParser``) value as it is, for the
    domain validators; DRF's JSONField would serialise it again just to check it."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class LabelTaskNextInputSerializer(StrictInputSerializer):
    project = serializers.IntegerField()
    order = serializers.ChoiceField(choices=["active", "random", "sequential"], default="active")


class LabelSaveInputSerializer(StrictInputSerializer):
    """Shapes are checked by ``annotation.shapes.validate_label`` against the image and the
    project's classes; here only the envelope."""

    version = serializers.IntegerField(min_value=0, help_text="The version you loaded; 0 to create your label.")
    outcome = serializers.ChoiceField(choices=Verdict.Outcome.choices)
    defect_class = serializers.IntegerField(allow_null=True, required=False, default=None)
    shapes = ParsedJSONField(required=False, default=list, help_text="Boxes, polygons and masks.")
    submit = serializers.BooleanField(required=False, default=False)


class LabelAdjudicateInputSerializer(StrictInputSerializer):
    outcome = serializers.ChoiceField(choices=Verdict.Outcome.choices)
    defect_class = serializers.IntegerField(allow_null=True, required=False, default=None)
    shapes = ParsedJSONField(required=False, default=list)


class LabelAssistInputSerializer(StrictInputSerializer):
    box = ParsedJSONField(help_text="[x, y, width, height] in image pixels.")
    points = ParsedJSONField(required=False, default=list, help_text='[{"x", "y", "positive"}, ...]')
    defect_class = serializers.IntegerField()


class LabelRevisionOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    author = serializers.CharField(source="author.username")
    defect_class = serializers.IntegerField(source="defect_class_id", allow_null=True)

    class Meta:
        model = LabelRevision
        fields = ["version", "author", "outcome", "defect_class", "shapes_count", "submitted", "created_at"]


class PrelabelsOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]  # documents the shape
    model_version = serializers.CharField(allow_null=True)
    outcome = serializers.CharField(allow_null=True)
    defect_class = serializers.IntegerField(allow_null=True)
    probabilities = serializers.DictField(child=serializers.FloatField(), allow_null=True)
    shapes = serializers.ListField(child=serializers.DictField())


class AssistOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]  # documents the shape
    shapes = serializers.ListField(child=serializers.DictField())
    mask = serializers.DictField(help_text='Uncompressed COCO RLE: {"size": [height, width], "counts": [...]}')


class LabellingStatsOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]  # documents the shape
    tasks = serializers.DictField(child=serializers.IntegerField())
    annotators = serializers.ListField(child=serializers.DictField())
    agreement = serializers.DictField()


class TileDescriptorOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]  # documents the shape
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    tile_size = serializers.IntegerField()
    levels = serializers.IntegerField()
    format = serializers.CharField()
