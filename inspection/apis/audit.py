"""The audit trail: read and export only (no write, edit or delete endpoint)."""

from __future__ import annotations

import csv
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request

from inspection import selectors
from inspection.models import (
    AuditEvent,
)
from inspection.permissions import IsPerson
from inspection.serializers import (
    AuditEventOutputSerializer,
)
from inspection.spreadsheets import csv_cell

# --- audit trail (read and export only: there is no write, edit or delete endpoint) -------


class AuditEventFilter(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
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


class _Echo:
    def write(self, value: str) -> str:
        return value


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
        rows = self.filter_queryset(self.get_queryset()).order_by("id")
        columns = [
            "id",
            "created_at",
            "project",
            "actor_label",
            "action",
            "object_type",
            "object_id",
            "before",
            "after",
        ]
        writer = csv.writer(_Echo())

        def lines() -> Any:
            yield writer.writerow(columns)
            for event in rows.iterator(chunk_size=2000):
                yield writer.writerow(
                    [csv_cell(getattr(event, "project_id" if c == "project" else c)) for c in columns]
                )

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="loupe-audit.csv"'
        return response
