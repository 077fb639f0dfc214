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
    model_version_compare_request,
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
    """POST .../cancel, .../deploy, .../retire, .../compare (managers). Every change is a state
    transition; compare queues a comparison with the serving set (202)."""

    permission_classes = [IsPerson]
    transitions = {
        "cancel": training_cancel,
        "deploy": model_version_deploy,
        "retire": model_version_retire,
        "compare": model_version_compare_request,
    }

    @extend_schema(
        operation_id="model_versions_transition",
        request=ModelVersionDeployInputSerializer,
        responses={200: ModelVersionOutputSerializer},
        description=(
            'deploy takes an optional body {"precision": "fp32" | "int8", "force": false}: a version whose '
            "comparison found it worse than the serving set is refused (409 worse_than_serving) unless "
            "force is true; the others take none."
        ),
    )
    def post(self, request: Request, pk: int, action: str) -> Response:
        if action not in self.transitions:
            raise NotFound(f"Unknown action {action!r}: use cancel, deploy, retire or compare.")
        options: dict[str, Any] = {}
        if action == "deploy":
            serializer = ModelVersionDeployInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            options["precision"] = serializer.validated_data["precision"]
            options["force"] = serializer.validated_data["force"]
        version = selectors.access_model_version(user=request.user, version_id=pk, roles=CAN_MANAGE)
        version = self.transitions[action](version=version, actor=request.user, **options)
        status_code = 202 if action == "compare" else 200
        return Response(ModelVersionOutputSerializer(version).data, status=status_code)
