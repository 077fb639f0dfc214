"""The audit trail: read and export only (no write, edit or delete endpoint)."""

from __future__ import annotations

from typing import Any

import django_filters
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request

from inspection import selectors
from inspection.filters import ScopedFilterSet
from inspection.models import (
    AuditEvent,
)
from inspection.permissions import IsPerson
from inspection.serializers import (
    AuditEventOutputSerializer,
)
from inspection.spreadsheets import csv_rows_streamed

# --- audit trail (read and export only: there is no write, edit or delete endpoint) -------


class AuditEventFilter(ScopedFilterSet):
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["project", "action", "object_type"]


class AuditEventListApi(generics.ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = AuditEventOutputSerializer
    filterset_class = AuditEventFilter
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return selectors.audit_events_for(user=self.request.user)


EXPORT_COLUMNS = ["id", "created_at", "project", "actor_label", "action", "object_type", "object_id", "before", "after"]


class AuditEventExportApi(generics.ListAPIView):  # type: ignore[type-arg]
    """The filtered audit trail as CSV, streamed in chunks (never the whole table in memory)."""

    permission_classes = [IsPerson]
    serializer_class = AuditEventOutputSerializer
    filterset_class = AuditEventFilter
    ordering_fields = ["id"]
    ordering = ["id"]
    pagination_class = None

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return selectors.audit_events_for(user=self.request.user)

    @extend_schema(responses={(200, "text/csv"): bytes})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> StreamingHttpResponse:  # type: ignore[override]
        rows = self.filter_queryset(self.get_queryset())
        columns = [(name, "project_id" if name == "project" else name) for name in EXPORT_COLUMNS]
        # Streamed in the server's own mode: under ASGI a synchronous iterator is read whole first.
        lines = csv_rows_streamed(rows, columns, asynchronous=isinstance(request._request, ASGIRequest))
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="loupe-audit.csv"'
        return response
