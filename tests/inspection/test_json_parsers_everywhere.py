"""No endpoint decodes JSON with DRF's stock parser: each one bounds nesting and size first
(bad-inputs case 22), so a hostile body is a 400 with a reason on every URL, not a 500 on
the one a view overrode."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.parsers import JSONParser
from rest_framework.test import APIClient

from inspection.parsers import SafeJSONParser
from tests.factories import make_project, make_user


def api_views(patterns: list[Any] | None = None) -> Iterator[tuple[str, Any]]:
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            yield from api_views(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and hasattr(pattern.callback, "cls"):
            yield str(pattern.pattern), pattern.callback.cls


def test_every_json_parser_of_every_api_view_is_the_bounded_one() -> None:
    views = list(api_views())
    unsafe = [
        f"{route} ({view.__name__}: {parser.__name__})"
        for route, view in views
        for parser in view.parser_classes
        if issubclass(parser, JSONParser) and not issubclass(parser, SafeJSONParser)
    ]

    assert len(views) > 20  # the walk found the API, not an empty resolver
    assert unsafe == []


@pytest.mark.django_db
def test_a_training_request_nested_ten_thousand_deep_is_a_400() -> None:
    project = make_project()
    manager = APIClient()
    manager.force_authenticate(make_user(project, role="manager"))
    nested = "[" * 10_000 + "]" * 10_000
    body = f'{{"project": {project.pk}, "kind": "classifier", "hyperparameters": {nested}}}'

    response = manager.post("/api/v1/model-versions", body, content_type="application/json")

    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]
    assert not project.model_versions.exists()
