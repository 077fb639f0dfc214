"""Webhooks and their delivery log (project admins)."""

from __future__ import annotations

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
    Webhook,
    WebhookDelivery,
)
from inspection.permissions import CAN_ADMINISTER, IsPerson
from inspection.serializers import (
    WebhookCreateInputSerializer,
    WebhookDeliveryOutputSerializer,
    WebhookOutputSerializer,
)
from inspection.services.webhooks import webhook_create, webhook_deactivate

# --- webhooks (project admins) -------------------------------------------------------------


class WebhookListApi(generics.ListAPIView):  # type: ignore[type-arg]
    """GET: the webhooks of projects the caller administers. POST: add one (secret shown once)."""

    permission_classes = [IsPerson]
    serializer_class = WebhookOutputSerializer
    ordering_fields = ["id"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[Webhook]:
        return selectors.webhooks_for(user=self.request.user)

    @extend_schema(request=WebhookCreateInputSerializer, responses={201: WebhookOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = WebhookCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        project = selectors.access_project(user=request.user, project_id=fields["project"], roles=CAN_ADMINISTER)
        webhook, secret = webhook_create(project=project, url=fields["url"], actor=request.user)
        return Response(
            {**WebhookOutputSerializer(webhook).data, "secret": secret},
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class WebhookDeactivateApi(APIView):
    permission_classes = [IsPerson]

    @extend_schema(request=None, responses={200: WebhookOutputSerializer})
    def post(self, request: Request, pk: int) -> Response:
        webhook = selectors.webhooks_for(user=request.user).filter(pk=pk).first()
        if webhook is None:
            raise NotFound("Webhook not found.")
        return Response(WebhookOutputSerializer(webhook_deactivate(webhook=webhook, actor=request.user)).data)


class WebhookDeliveryFilter(ScopedFilterSet):
    class Meta:
        model = WebhookDelivery
        fields = ["webhook", "status"]


class WebhookDeliveryListApi(generics.ListAPIView):  # type: ignore[type-arg]
    """The delivery log: every attempt's outcome, never the receiver's response body."""

    permission_classes = [IsPerson]
    serializer_class = WebhookDeliveryOutputSerializer
    filterset_class = WebhookDeliveryFilter
    ordering_fields = ["id"]
    ordering = ["-id"]

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        return selectors.webhook_deliveries_for(user=self.request.user)


class WebhookDeliveryDetailApi(generics.RetrieveAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = WebhookDeliveryOutputSerializer

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        return selectors.webhook_deliveries_for(user=self.request.user)
