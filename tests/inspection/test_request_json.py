"""Every JSON endpoint refuses, with a 400 and a reason, what is not JSON a client should
send: bodies nested thousands deep (a RecursionError, hence a 500, in the stock parser) and
NaN or Infinity (which Python's json module accepts)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager() -> tuple[APIClient, Any]:
    project = make_project()
    client = APIClient()
    client.force_authenticate(make_user(project, role="manager"))
    return client, project


@pytest.mark.parametrize("depth", [40, 10_000, 200_000])
def test_deeply_nested_json_is_a_400_on_any_endpoint(manager: tuple[APIClient, Any], depth: int) -> None:
    client, project = manager
    body = '{"description": ' + "[" * depth + "]" * depth + "}"

    for url, method in [(f"/api/v1/projects/{project.pk}", "patch"), ("/api/v1/review-items/claim", "post")]:
        response = getattr(client, method)(url, body, content_type="application/json")
        assert response.status_code == 400, (url, response.status_code)
        assert "nested deeper" in response.json()["detail"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(manager: tuple[APIClient, Any], constant: str) -> None:
    client, project = manager

    response = client.patch(
        f"/api/v1/projects/{project.pk}", '{"target_escape_rate": ' + constant + "}", content_type="application/json"
    )

    assert response.status_code == 400
    project.refresh_from_db()
    assert project.target_escape_rate != float("nan")


def test_ordinary_json_still_works(manager: tuple[APIClient, Any]) -> None:
    client, project = manager

    response = client.patch(f"/api/v1/projects/{project.pk}", {"description": "Line 4 tiles"}, format="json")

    assert response.status_code == 200 and response.json()["description"] == "Line 4 tiles"
