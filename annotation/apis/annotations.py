from __future__ import annotations

from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.views import APIView

from annotation.models import Annotation
from annotation.selectors import annotations_for
from annotation.serializers import AnnotationOutputSerializer
from inspection.errors import NotFound
from inspection.filters import ScopedFilterSet
from inspection.permissions import IsPerson
from inspection.services.retention import image_require_stored


class AnnotationFilter(ScopedFilterSet):
    class Meta:
        model = Annotation
        fields = ["project", "part", "source", "review_item"]


class AnnotationListApi(generics.ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = AnnotationOutputSerializer
    filterset_class = AnnotationFilter
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]

    def get_queryset(self) -> QuerySet[Annotation]:
        return annotations_for(user=self.request.user)


class AnnotationDetailApi(generics.RetrieveAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = AnnotationOutputSerializer

    def get_queryset(self) -> QuerySet[Annotation]:
        return annotations_for(user=self.request.user)


class AnnotationImageApi(APIView):
    """The image a label is on (imported training images have no inspection): same headers
    as an inspection's image, scoped to the caller's projects."""

    permission_classes = [IsPerson]

    @extend_schema(responses={(200, "image/*"): bytes})
    def get(self, request: Request, pk: int) -> FileResponse:
        annotation = annotations_for(user=request.user).select_related("image").filter(pk=pk).first()
        if annotation is None:
            raise NotFound("Annotation not found.")
        image = annotation.image
        image_require_stored(image)
        response = FileResponse(default_storage.open(image.file, "rb"), content_type=image.content_type)
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cache-Control"] = "private, max-age=3600"
        return response
