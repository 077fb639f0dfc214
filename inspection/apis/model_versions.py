"""The model registry: training jobs, deploy, retire."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors
from inspection.errors import NotFound
from inspection.filters import ScopedFilterSet
from inspection.models import (
    ModelVersion,
)
from inspection.permissions import CAN_MANAGE, IsPerson
from inspection.serializers import (
    ModelVersionDeployInputSerializer,
    ModelVersionOutputSerializer,
    TrainingStartInputSerializer,
)
from inspection.services.model_versions import (
    model_version_deploy,
    model_version_retire,
    training_cancel,
    training_start,
)

# --- model registry and training ---------------------------------------------------------


class ModelVersionFilter(ScopedFilterSet):
    class Meta:
        model = ModelVersion
        fields = ["project", "kind", "status"]


class ModelVersionListApi(generics.ListAPIView):  # type: ignore[type-arg]
    """GET: model versions of the caller's projects. POST (managers): start a training job."""

    permission_classes = [IsPerson]
    serializer_class = ModelVersionOutputSerializer
    filterset_class = ModelVersionFilter
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]

    def get_queryset(self) -> QuerySet[ModelVersion]:
        return selectors.model_versions_for(user=self.request.user)

    @extend_schema(request=TrainingStartInputSerializer, responses={202: ModelVersionOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = TrainingStartInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        project = selectors.access_project(user=request.user, project_id=fields["project"], roles=CAN_MANAGE)
        version = training_start(
            project=project, kind=fields["kind"], author=request.user, hyperparameters=fields["hyperparameters"]
        )
        return Response(ModelVersionOutputSerializer(version).data, status=status.HTTP_202_ACCEPTED)


class ModelVersionDetailApi(generics.RetrieveAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = ModelVersionOutputSerializer

    def get_queryset(self) -> QuerySet[ModelVersion]:
        return selectors.model_versions_for(user=self.request.user)


class ModelVersionActionApi(APIView):
    """POST .../cancel, .../deploy, .../retire (managers). Every change is a state transition."""

    permission_classes = [IsPerson]
    transitions = {"cancel": training_cancel, "deploy": model_version_deploy, "retire": model_version_retire}

    @extend_schema(
        operation_id="model_versions_transition",
        request=ModelVersionDeployInputSerializer,
        responses={200: ModelVersionOutputSerializer},
        description='deploy takes an optional body {"precision": "fp32" | "int8"}; the others take none.',
    )
    def post(self, request: Request, pk: int, action: str) -> Response:
        if action not in self.transitions:
            raise NotFound(f"Unknown action {action!r}: use cancel, deploy or retire.")
        options: dict[str, Any] = {}
        if action == "deploy":
            serializer = ModelVersionDeployInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            options["precision"] = serializer.validated_data["precision"]
        version = selectors.access_model_version(user=request.user, version_id=pk, roles=CAN_MANAGE)
        version = self.transitions[action](version=version, actor=request.user, **options)
        return Response(ModelVersionOutputSerializer(version).data)
