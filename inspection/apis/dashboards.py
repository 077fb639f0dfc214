"""Manager dashboards: charts over the rollups, as JSON or as the CSV of what a chart shows.

``GET /api/v1/projects/{id}/dashboard/{chart}`` for managers and admins of the project
(another project answers 404, a lower role 403). Query parameters are an allowlist; a bad
date, an unknown parameter or a range over the limit is a 400 that says why.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import dashboards, selectors
from inspection.models import Period
from inspection.permissions import CAN_MANAGE, IsPerson
from inspection.serializers import StrictInputSerializer
from inspection.services.rollups import YIELD_COUNTERS
from inspection.spreadsheets import csv_cell


class DashboardCsvRenderer(BaseRenderer):
    """A chart's ``columns`` as the header row and its ``rows`` below, formulas defused."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(data["columns"])
        for row in data["rows"]:
            writer.writerow([_cell(row[name]) for name in data["columns"]])
        return out.getvalue().encode(self.charset)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return value  # counts and rates: written as they are, nothing to defuse
    return csv_cell(value)


class DashboardQuerySerializer(StrictInputSerializer):
    line = serializers.IntegerField(min_value=1, required=False, help_text="Only this line's stations.")
    station = serializers.IntegerField(min_value=1, required=False, help_text="Only this station.")
    sku = serializers.CharField(max_length=128, required=False, allow_blank=True, help_text="Only parts of this SKU.")
    interval = serializers.ChoiceField(
        choices=[Period.HOUR.value, Period.DAY.value],
        required=False,
        help_text="Bucket size; default hour for ranges of two days or less, else day.",
    )
    group_by = serializers.ChoiceField(choices=list(dashboards.GROUPINGS), required=False, default="none")
    format = serializers.ChoiceField(choices=["json", "csv"], required=False)

    def get_fields(self) -> dict[str, serializers.Field]:  # type: ignore[type-arg]
        fields = super().get_fields()
        # "from" is a Python keyword, so these two are declared here rather than as attributes.
        fields["from"] = serializers.DateField(required=False, help_text="First day, YYYY-MM-DD (UTC).")
        fields["to"] = serializers.DateField(required=False, help_text="Last day, inclusive, YYYY-MM-DD (UTC).")
        return fields


class UngroupedDashboardQuerySerializer(DashboardQuerySerializer):
    def get_fields(self) -> dict[str, serializers.Field]:  # type: ignore[type-arg]
        fields = super().get_fields()
        del fields["group_by"]
        return fields


_FILTERS = [
    OpenApiParameter("from", OpenApiTypes.DATE, description="First day (UTC); default 29 days before 'to'."),
    OpenApiParameter("to", OpenApiTypes.DATE, description="Last day, inclusive (UTC); default today."),
    OpenApiParameter("line", int),
    OpenApiParameter("station", int),
    OpenApiParameter("sku", str),
    OpenApiParameter("interval", str, enum=["hour", "day"]),
    OpenApiParameter("format", str, enum=["json", "csv"], description="csv: the rows as CSV (or Accept: text/csv)."),
]
_GROUP_BY = OpenApiParameter("group_by", str, enum=list(dashboards.GROUPINGS))

_SERIES_FIELDS: dict[str, serializers.Field] = {  # type: ignore[type-arg]
    "bucket": serializers.DateTimeField(help_text="Start of the hour or day, UTC."),
    "group": serializers.CharField(help_text="Line, 'line/station', SKU or shift name; 'all' when ungrouped."),
    "group_id": serializers.IntegerField(allow_null=True, help_text="Line or station id; null otherwise."),
}


class DashboardFiltersSerializer(serializers.Serializer):  # type: ignore[type-arg]  # DRF generic default
    """The filters a chart was drawn with (null: not filtered)."""

    line = serializers.IntegerField(allow_null=True)
    station = serializers.IntegerField(allow_null=True)
    sku = serializers.CharField(allow_null=True)


def _chart_schema(name: str, row_fields: dict[str, serializers.Field], **extra: serializers.Field) -> Any:  # type: ignore[type-arg]
    meta: dict[str, Any] = {
        "chart": serializers.CharField(),
        "project": serializers.IntegerField(),
        "from": serializers.DateField(),
        "to": serializers.DateField(),
        "interval": serializers.ChoiceField(choices=["hour", "day"]),
        "group_by": serializers.CharField(allow_null=True),
        "filters": DashboardFiltersSerializer(),
        "columns": serializers.ListField(child=serializers.CharField()),
    }
    rows = inline_serializer(name=f"Dashboard{name}Row", fields=row_fields, many=True)
    return {
        200: inline_serializer(name=f"Dashboard{name}", fields={**meta, "rows": rows, **extra}),
        (200, "text/csv"): OpenApiTypes.STR,
    }


def _counts(*names: str) -> dict[str, serializers.Field]:  # type: ignore[type-arg]
    return {name: serializers.IntegerField() for name in names}


def _rates(*names: str) -> dict[str, serializers.Field]:  # type: ignore[type-arg]
    return {
        name: serializers.FloatField(allow_null=True, help_text="0-1; null when nothing to divide by.")
        for name in names
    }


class _DashboardApi(APIView):
    """Shared by every chart: access, parameters, CSV, errors always as JSON."""

    permission_classes = [IsPerson]
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, DashboardCsvRenderer]
    chart = ""
    grouped = True

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        try:
            return super().perform_content_negotiation(request, force=force)
        except Http404:
            # DRF answers an unknown ?format= with 404; here it is a bad parameter.
            raise exceptions.ValidationError({"format": "Must be json or csv."}) from None

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if response.status_code >= 400 and isinstance(
            getattr(request, "accepted_renderer", None), DashboardCsvRenderer
        ):
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    def get(self, request: Request, pk: int) -> Response:
        project = selectors.access_project(user=request.user, project_id=pk, roles=CAN_MANAGE)
        serializer_class = DashboardQuerySerializer if self.grouped else UngroupedDashboardQuerySerializer
        params = serializer_class(data=request.query_params)
        params.is_valid(raise_exception=True)
        given = params.validated_data
        query = dashboards.dashboard_query(
            project=project,
            date_from=given.get("from"),
            date_to=given.get("to"),
            line_id=given.get("line"),
            station_id=given.get("station"),
            sku=given.get("sku"),
            group_by=given.get("group_by"),
            interval=given.get("interval"),
        )
        chart = dashboards.CHARTS[self.chart](query)
        body = {
            "chart": self.chart,
            "project": project.pk,
            "from": query.date_from.isoformat(),
            "to": query.date_to.isoformat(),
            "interval": query.interval,
            "group_by": query.group_by if self.grouped else None,
            "filters": {"line": query.line_id, "station": query.station_id, "sku": query.sku},
            **chart,
        }
        response = Response(body)
        if isinstance(request.accepted_renderer, DashboardCsvRenderer):
            name = f"loupe-{self.chart}-{project.pk}-{query.date_from}-{query.date_to}.csv"
            response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


class DashboardYieldApi(_DashboardApi):
    """First-pass yield over time: passed over decided parts per hour or day, by line,
    station, SKU or shift."""

    chart = "yield"

    @extend_schema(
        parameters=[*_FILTERS, _GROUP_BY],
        responses=_chart_schema(
            "Yield",
            {**_SERIES_FIELDS, **_counts("parts_decided", "passed", "failed"), **_rates("first_pass_yield")},
        ),
    )
    def get(self, request: Request, pk: int) -> Response:
        return super().get(request, pk)


class DashboardThroughputApi(_DashboardApi):
    """Parts decided per bucket and per hour."""

    chart = "throughput"

    @extend_schema(
        parameters=[*_FILTERS, _GROUP_BY],
        responses=_chart_schema(
            "Throughput",
            {**_SERIES_FIELDS, **_counts("parts_decided"), "parts_per_hour": serializers.FloatField()},
        ),
    )
    def get(self, request: Request, pk: int) -> Response:
        return super().get(request, pk)


class DashboardAutomationApi(_DashboardApi):
    """Automation rate: parts whose final verdict came from the models, over parts decided."""

    chart = "automation"

    @extend_schema(
        parameters=[*_FILTERS, _GROUP_BY],
        responses=_chart_schema(
            "Automation",
            {
                **_SERIES_FIELDS,
                **_counts("parts_decided", "auto_passed", "auto_failed", "human_passed", "human_failed"),
                **_rates("automation_rate"),
            },
        ),
    )
    def get(self, request: Request, pk: int) -> Response:
        return super().get(request, pk)


class DashboardAuditsApi(_DashboardApi):
    """Escape and false-reject rates measured on audit samples (buckets with audits only)."""

    chart = "audits"

    @extend_schema(
        parameters=[*_FILTERS, _GROUP_BY],
        responses=_chart_schema(
            "Audits",
            {
                **_SERIES_FIELDS,
                **_counts("audited_auto_passes", "escapes"),
                **_rates("escape_rate"),
                **_counts("audited_auto_fails", "false_rejects"),
                **_rates("false_reject_rate"),
            },
        ),
    )
    def get(self, request: Request, pk: int) -> Response:
        return super().get(request, pk)


class DashboardParetoApi(_DashboardApi):
    """Defect Pareto: failed parts by defect class, most frequent first, with cumulative share."""

    chart = "pareto"
    grouped = False

    @extend_schema(
        parameters=_FILTERS,
        responses=_chart_schema(
            "Pareto",
            {
                "defect_class_id": serializers.IntegerField(allow_null=True, help_text="null: failed, no class."),
                "defect_class": serializers.CharField(allow_null=True),
                **_counts("failed"),
                **_rates("share", "cumulative_share"),
            },
            failed_total=serializers.IntegerField(),
        ),
    )
    def get(self, request: Request, pk: int) -> Response:
        return super().get(request, pk)


class DashboardSummaryApi(_DashboardApi):
    """Totals over the range (one row: counts and rates) and the review backlog now."""

    chart = "summary"
    grouped = False

    @extend_schema(
        parameters=_FILTERS,
        responses=_chart_schema(
            "Summary",
            {
                **_counts(*YIELD_COUNTERS),
                **_rates("first_pass_yield", "automation_rate", "escape_rate", "false_reject_rate"),
            },
            review_queue=inline_serializer(
                name="DashboardReviewQueue",
                fields={
                    **_counts("open", "claimed", "sla_breaches", "sla_minutes"),
                    "oldest_waiting_seconds": serializers.FloatField(allow_null=True),
                },
            ),
        ),
    )
    def get(self, request: Request, pk: int) -> Response:
        return super().get(request, pk)
