"""Query parameters are an allowlist: an unknown one is a 400, not silently ignored.

This closes filter/ordering injection through relations such as
``?created_by__password__startswith=a`` or ``?ordering=user__password`` (bad-inputs case 6).
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
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


class IdFilter(django_filters.Filter):  # type: ignore[misc]  # django-filter is untyped
    field_class = forms.IntegerField


class ScopedFilterSet(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
    """The base of every FilterSet: a related object (``?project=``, ``?part=``, ...) is
    filtered by its id, never looked up. django-filter's default looks the id up among all
    rows and answers 400 for one that does not exist, while another tenant's id passes and
    gives an empty page: a caller could tell which ids exist in projects not theirs. By id,
    both are the same empty page (the views' querysets are scoped to the caller already)."""

    @classmethod
    def filter_for_field(cls, field: Any, field_name: str, lookup_expr: str | None = None) -> Any:
        if field.is_relation and (field.many_to_one or field.one_to_one):
            return IdFilter(field_name=field_name, lookup_expr=lookup_expr or "exact")
        return super().filter_for_field(field, field_name, lookup_expr)
