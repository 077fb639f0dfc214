"""Query parameters are an allowlist: an unknown one is a 400, not silently ignored.

This closes filter/ordering injection through relations such as
``?created_by__password__startswith=a`` or ``?ordering=user__password`` (bad-inputs case 6).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import exceptions
from rest_framework.filters import BaseFilterBackend
from rest_framework.request import Request

_ALWAYS_ALLOWED = {"cursor", "page_size", "format"}


class StrictQueryParamsFilterBackend(BaseFilterBackend):
    def filter_queryset(self, request: Request, queryset: QuerySet[Any], view: Any) -> QuerySet[Any]:
        allowed = set(_ALWAYS_ALLOWED)
        filterset_class = getattr(view, "filterset_class", None)
        if filterset_class is not None:
            allowed |= set(filterset_class.base_filters)
        allowed |= set(getattr(view, "filterset_fields", None) or [])
        if getattr(view, "ordering_fields", None):
            allowed.add("ordering")
            ordering = request.query_params.get("ordering")
            if ordering:
                fields = {field.lstrip("-") for field in ordering.split(",")}
                unknown_ordering = fields - set(view.ordering_fields)
                if unknown_ordering:
                    raise exceptions.ValidationError(
                        {"ordering": f"Cannot order by {', '.join(sorted(unknown_ordering))}."}
                    )
        unknown = set(request.query_params) - allowed
        if unknown:
            raise exceptions.ValidationError({"query": f"Unknown query parameter(s): {', '.join(sorted(unknown))}."})
        return queryset
