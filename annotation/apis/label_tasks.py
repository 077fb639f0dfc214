"""The annotation studio: label tasks, each annotator's label on them, suggestions from the
models, segmentation assist, adjudication and the project's labelling progress.

Annotators and everyone above them label; managers and admins adjudicate. Every task of a
project the caller is not a member of answers 404.
"""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors, services
from annotation.models import LabelTask
from annotation.parsers import LabelJSONParser
from annotation.serializers import (
    AssistOutputSerializer,
    LabelAdjudicateInputSerializer,
    LabelAssistInputSerializer,
    LabellingStatsOutputSerializer,
    LabelOutputSerializer,
    LabelRevisionOutputSerializer,
    LabelSaveInputSerializer,
    LabelTaskDetailOutputSerializer,
    LabelTaskNextInputSerializer,
    LabelTaskOutputSerializer,
    PrelabelsOutputSerializer,
)
from inspection.filters import ScopedFilterSet
from inspection.permissions import CAN_MANAGE, IsPerson
from inspection.selectors import access_project


class LabelTaskFilter(ScopedFilterSet):
    status = django_filters.MultipleChoiceFilter(choices=LabelTask.Status.choices)

    class Meta:
        model = LabelTask
        fields = ["project", "status"]


def _detail(request: Request, task: LabelTask) -> Response:
    context = selectors.label_task_context(task=task, user=request.user)
    return Response(LabelTaskDetailOutputSerializer(task, context=context).data)


class LabelTaskListApi(generics.ListAPIView):  # type: ignore[type-arg]
    """Tasks of the caller's projects, most informative first (``?ordering=id`` for oldest)."""

    permission_classes = [IsPerson]
    serializer_class = LabelTaskOutputSerializer
    filterset_class = LabelTaskFilter
    ordering_fields = ["id", "priority", "created_at"]
    ordering = ["-priority", "id"]

    def get_queryset(self) -> QuerySet[LabelTask]:
        return selectors.label_tasks_for(user=self.request.user)


class LabelTaskNextApi(APIView):
    permission_classes = [IsPerson]

    @extend_schema(
        request=LabelTaskNextInputSerializer,
        responses={200: LabelTaskDetailOutputSerializer, 204: OpenApiResponse(description="Nothing left for you.")},
        description="The next task for the caller: not skipped or submitted by them, still wanting labels, "
        "not adjudicated. order: active (priority), sequential (oldest), random.",
    )
    def post(self, request: Request) -> Response:
        serializer = LabelTaskNextInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = access_project(user=request.user, project_id=serializer.validated_data["project"])
        task = selectors.label_task_next(user=request.user, project=project, order=serializer.validated_data["order"])
        if task is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return _detail(request, task)


class LabelTaskDetailApi(APIView):
    permission_classes = [IsPerson]

    @extend_schema(responses=LabelTaskDetailOutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return _detail(request, selectors.access_label_task(user=request.user, task_id=pk))


class LabelTaskSkipApi(APIView):
    permission_classes = [IsPerson]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, pk: int) -> Response:
        task = selectors.access_label_task(user=request.user, task_id=pk)
        services.label_task_skip(task=task, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LabelSaveApi(APIView):
    permission_classes = [IsPerson]
    parser_classes = [LabelJSONParser]

    @extend_schema(
        request=LabelSaveInputSerializer,
        responses={200: LabelOutputSerializer, 409: OpenApiResponse(description="stale_version, with current")},
        description="Save the caller's label. version must be the stored one (0 to create); otherwise 409 "
        '{"code": "stale_version", "detail", "current": <stored label>} and nothing is written.',
    )
    def put(self, request: Request, pk: int) -> Response:
        task = selectors.access_label_task(user=request.user, task_id=pk)
        serializer = LabelSaveInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        label = services.label_save(
            task=task,
            author=request.user,
            version=fields["version"],
            outcome=fields["outcome"],
            defect_class=fields["defect_class"],
            shapes=fields["shapes"],
            submit=fields["submit"],
        )
        return Response(LabelOutputSerializer(label).data)


class LabelHistoryApi(APIView):
    permission_classes = [IsPerson]

    @extend_schema(responses=LabelRevisionOutputSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        task = selectors.access_label_task(user=request.user, task_id=pk)
        revisions = selectors.label_history_for(task=task, user=request.user)
        return Response(LabelRevisionOutputSerializer(revisions, many=True).data)


class LabelPrelabelsApi(APIView):
    permission_classes = [IsPerson]

    @extend_schema(responses=PrelabelsOutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        task = selectors.access_label_task(user=request.user, task_id=pk)
        return Response(selectors.prelabels_for(task=task))


class LabelAssistApi(APIView):
    permission_classes = [IsPerson]
    parser_classes = [LabelJSONParser]

    @extend_schema(request=LabelAssistInputSerializer, responses=AssistOutputSerializer)
    def post(self, request: Request, pk: int) -> Response:
        task = selectors.access_label_task(user=request.user, task_id=pk)
        serializer = LabelAssistInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        suggestion = selectors.assist_for(
            task=task, box=fields["box"], points=fields["points"], defect_class=fields["defect_class"]
        )
        return Response(suggestion)


class LabelAdjudicateApi(APIView):
    permission_classes = [IsPerson]
    parser_classes = [LabelJSONParser]

    @extend_schema(request=LabelAdjudicateInputSerializer, responses=LabelTaskDetailOutputSerializer)
    def post(self, request: Request, pk: int) -> Response:
        task = selectors.access_label_task(user=request.user, task_id=pk, roles=CAN_MANAGE)
        serializer = LabelAdjudicateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        task = services.label_task_adjudicate(
            task=task,
            actor=request.user,
            outcome=fields["outcome"],
            defect_class=fields["defect_class"],
            shapes=fields["shapes"],
        )
        return _detail(request, task)


class ProjectLabellingApi(APIView):
    """Labelling progress: tasks by status, annotators' work (managers see everyone's, others
    their own row) and agreement between annotators (class kappa, shape IoU)."""

    permission_classes = [IsPerson]

    @extend_schema(responses=LabellingStatsOutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        project = access_project(user=request.user, project_id=pk)
        return Response(selectors.labelling_stats(project=project, user=request.user))
