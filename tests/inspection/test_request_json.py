"""Every JSON endpoint refuses, with a 400 and a reason, what is not JSON a client should
send: bodies nested thousands deep (a RecursionError, hence a 500, in the stock parser),
NaN or Infinity (which Python's json module accepts), and strings holding U+0000 (which
PostgreSQL's text and jsonb reject, hence a 500 at the write)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from rest_framework.exceptions import ParseError
from rest_framework.test import APIClient

from annotation.parsers import LabelJSONParser
from inspection.models import ModelVersion
from tests.factories import make_project, make_user

NUL_REFUSED = "JSON strings may not contain the NUL character (\\u0000)."

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


@pytest.mark.parametrize(
    "shifts",
    [
        [{"name": "A\x00", "start": 6}],  # in a value
        [{"name": "A", "start": 6, "note\x00": "x"}],  # in a key
        [{"name": "A", "start": 6, "crew": [{"lead": ["Ana\x00"]}]}],  # deep in a value
    ],
)
def test_a_nul_character_anywhere_in_a_json_body_is_a_400_on_any_endpoint(
    manager: tuple[APIClient, Any], shifts: list[dict[str, Any]]
) -> None:
    client, project = manager
    before = project.shifts
    hyperparameters = {"augment": {"flips": shifts}}
    bodies = [
        (f"/api/v1/projects/{project.pk}", "patch", {"shifts": shifts}),
        (
            "/api/v1/model-versions",
            "post",
            {"project": project.pk, "kind": "classifier", "hyperparameters": hyperparameters},
        ),
    ]

    for url, method, body in bodies:
        response = getattr(client, method)(url, json.dumps(body), content_type="application/json")

        assert response.status_code == 400, (url, response.status_code)
        assert response.json() == {"code": "parse_error", "detail": NUL_REFUSED}

    project.refresh_from_db()
    assert project.shifts == before
    assert not ModelVersion.objects.filter(project=project).exists()


def test_the_text_backslash_u0000_is_not_a_nul_character_and_is_kept(manager: tuple[APIClient, Any]) -> None:
    client, project = manager
    description = "Rig path C:\\u0000\\images"  # an escaped backslash, then the letters u0000

    response = client.patch(f"/api/v1/projects/{project.pk}", {"description": description}, format="json")

    assert response.status_code == 200 and response.json()["description"] == description


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_the_label_parser_refuses_a_nul_character_in_any_json_encoding(encoding: str) -> None:
    body = json.dumps({"outcome": "fail", "shapes": [{"type": "box", "label\x00": 1}]}).encode(encoding)

    with pytest.raises(ParseError) as refused:
        LabelJSONParser().parse(io.BytesIO(body))

    assert refused.value.detail == NUL_REFUSED
