from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.parsers import LabelJSONParser
from inspection.errors import NotFound
from inspection.filters import ScopedFilterSet
from inspection.permissions import CAN_MANAGE, IsPerson
from inspection.selectors import access_project, parts_for
from review import selectors, services
from review.models import GoldenPart, ReviewItem
from review.quality import GROUPINGS, quality_metrics
from review.serializers import (
    GoldenPartInputSerializer,
    GoldenPartOutputSerializer,
    QualityQuerySerializer,
    ReviewClaimInputSerializer,
    ReviewDecisionInputSerializer,
    ReviewItemOutputSerializer,
    ReviewQueueStatsSerializer,
)


class ReviewItemFilter(ScopedFilterSet):
    # By the reason people are shown: a golden item answers to its disguise, never to "golden".
    reason = django_filters.ChoiceFilter(choices=ReviewItem.Reason.choices, method="filter_reason")

    class Meta:
        model = ReviewItem
        fields = ["project", "status", "reason"]

    def filter_reason(self, queryset: QuerySet[ReviewItem], name: str, value: str) -> QuerySet[ReviewItem]:
        return queryset.filter(Q(shown_reason=value) | Q(shown_reason="", reason=value))


class ReviewItemListApi(generics.ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = ReviewItemOutputSerializer
    filterset_class = ReviewItemFilter
    ordering_fields = ["created_at", "id"]
    ordering = ["created_at", "id"]

    def get_queryset(self) -> QuerySet[ReviewItem]:
        return selectors.review_items_for(user=self.request.user)


class ReviewItemDetailApi(generics.RetrieveAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = ReviewItemOutputSerializer

    def get_queryset(self) -> QuerySet[ReviewItem]:
        return selectors.review_items_for(user=self.request.user)


class ReviewItemDecideApi(APIView):
    permission_classes = [IsPerson]
    # A decision may carry corrected shapes: bound their cost before the body is decoded.
    parser_classes = [LabelJSONParser]

    """Decide an item; answers with the decided item, alike for every item, so that a golden
    one (which scores the reviewer and leaves its part as it was) does not give itself away.
    The part's new verdict is on its inspection (GET /inspections/{id})."""

    @extend_schema(request=ReviewDecisionInputSerializer, responses={201: ReviewItemOutputSerializer})
    def post(self, request: Request, pk: int) -> Response:
        item = selectors.access_review_item(user=request.user, item_id=pk)
        serializer = ReviewDecisionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.review_decide(
            item=item,
            reviewer=request.user,
            outcome=serializer.validated_data["outcome"],
            defect_class_id=serializer.validated_data.get("defect_class"),
            comment=serializer.validated_data["comment"],
            shapes=serializer.validated_data.get("shapes"),
        )
        decided = selectors.review_items_for(user=request.user).get(pk=item.pk)
        return Response(ReviewItemOutputSerializer(decided).data, status=status.HTTP_201_CREATED)


class ReviewItemClaimApi(APIView):
    """Lease the next item (oldest first) to the caller; 204 when the queue is empty."""

    permission_classes = [IsPerson]

    @extend_schema(request=ReviewClaimInputSerializer, responses={200: ReviewItemOutputSerializer, 204: None})
    def post(self, request: Request) -> Response:
        serializer = ReviewClaimInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project_ids = selectors.reviewable_project_ids(user=request.user)
        wanted = serializer.validated_data.get("project")
        if wanted is not None:
            if wanted not in project_ids:
                raise NotFound("Project not found.")
            project_ids = [wanted]
        item = services.review_claim_next(
            reviewer=request.user, project_ids=project_ids, exclude_ids=serializer.validated_data.get("exclude", [])
        )
        if item is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        item = selectors.review_items_for(user=request.user).get(pk=item.pk)
        return Response(ReviewItemOutputSerializer(item).data)


class ReviewItemReleaseApi(APIView):
    permission_classes = [IsPerson]

    @extend_schema(request=None, responses={200: ReviewItemOutputSerializer})
    def post(self, request: Request, pk: int) -> Response:
        item = selectors.access_review_item(user=request.user, item_id=pk)
        item = services.review_release(item=item, reviewer=request.user)
        return Response(ReviewItemOutputSerializer(selectors.review_items_for(user=request.user).get(pk=item.pk)).data)


class ReviewQueueStatsApi(APIView):
    """Backlog and SLA breaches per project the caller reviews."""

    permission_classes = [IsPerson]

    @extend_schema(responses={200: ReviewQueueStatsSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(ReviewQueueStatsSerializer(selectors.review_queue_stats(user=request.user), many=True).data)


class GoldenPartListApi(generics.ListAPIView):  # type: ignore[type-arg]
    """GET: golden parts of projects the caller manages. POST: fix a part's right answer."""

    permission_classes = [IsPerson]
    serializer_class = GoldenPartOutputSerializer
    ordering_fields = ["id"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[GoldenPart]:
        return selectors.golden_parts_for(user=self.request.user)

    @extend_schema(request=GoldenPartInputSerializer, responses={201: GoldenPartOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = GoldenPartInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        part = parts_for(user=request.user).filter(pk=serializer.validated_data["part"]).first()
        if part is None:
            raise NotFound("Part not found.")
        access_project(user=request.user, project_id=part.project_id, roles=CAN_MANAGE)
        golden = services.golden_mark(
            part=part,
            outcome=serializer.validated_data["outcome"],
            defect_class_id=serializer.validated_data.get("defect_class"),
            actor=request.user,
        )
        return Response(GoldenPartOutputSerializer(golden).data, status=status.HTTP_201_CREATED)


class QualityMetricsApi(APIView):
    """Automation, measured escape and false-reject rates, model/people agreement and reviewer
    statistics for one project, optionally per day, line or station, in a date window."""

    permission_classes = [IsPerson]

    @extend_schema(
        parameters=[
            OpenApiParameter("project", int, required=True),
            OpenApiParameter("group_by", str, enum=list(GROUPINGS)),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
        ],
        responses={200: None},
    )
    def get(self, request: Request) -> Response:
        serializer = QualityQuerySerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        query = serializer.validated_data
        project = access_project(user=request.user, project_id=query["project"], roles=CAN_MANAGE)
        return Response(
            quality_metrics(
                project_id=project.pk,
                group_by=query.get("group_by"),
                since=query.get("since"),
                until=query.get("until"),
            )
        )
