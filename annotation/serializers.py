from __future__ import annotations

from rest_framework import serializers

from annotation.models import Annotation


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
