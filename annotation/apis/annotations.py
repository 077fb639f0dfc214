from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from rest_framework import generics

from annotation.models import Annotation
from annotation.selectors import annotations_for
from annotation.serializers import AnnotationOutputSerializer
from inspection.permissions import IsPerson


class AnnotationFilter(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
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
