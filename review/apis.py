from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection.permissions import IsPerson
from inspection.serializers import VerdictOutputSerializer
from review import selectors, services
from review.models import ReviewItem
from review.serializers import ReviewDecisionInputSerializer, ReviewItemOutputSerializer


class ReviewItemFilter(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
    class Meta:
        model = ReviewItem
        fields = ["project", "status", "reason"]


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

    @extend_schema(request=ReviewDecisionInputSerializer, responses={201: VerdictOutputSerializer})
    def post(self, request: Request, pk: int) -> Response:
        item = selectors.access_review_item(user=request.user, item_id=pk)
        serializer = ReviewDecisionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        verdict = services.review_decide(
            item=item,
            reviewer=request.user,
            outcome=serializer.validated_data["outcome"],
            defect_class_id=serializer.validated_data.get("defect_class"),
            comment=serializer.validated_data["comment"],
        )
        return Response(VerdictOutputSerializer(verdict).data, status=status.HTTP_201_CREATED)
