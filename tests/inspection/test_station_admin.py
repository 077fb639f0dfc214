"""Project admins add stations and issue and revoke their tokens; nobody else can."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from inspection.models import Station, StationToken
from tests.factories import make_project, make_station, make_user, part_jpeg, upload

pytestmark = pytest.mark.django_db


def test_an_admin_adds_a_station_issues_a_token_and_the_station_can_post() -> None:
    project = make_project()
    client = APIClient()
    client.force_authenticate(make_user(project, role="admin"))

    station: Any = client.post(
        "/api/v1/stations", {"project": project.pk, "line": "L2", "name": "Top cam"}, format="json"
    )
    issued: Any = client.post(f"/api/v1/stations/{station.json()['id']}/tokens", {"ttl_days": 30}, format="json")
    posted = APIClient().post(
        "/api/v1/inspections",
        {"part_serial": "T-1", "image": upload(part_jpeg())},
        format="multipart",
        headers={"Authorization": f"Station {issued.json()['token']}"},
    )

    assert station.status_code == 201 and station.json()["line"] == "L2"
    assert issued.status_code == 201 and issued["Cache-Control"] == "no-store"
    assert posted.status_code == 202
    listed = client.get("/api/v1/station-tokens").json()["results"]
    assert [row["prefix"] for row in listed] == [issued.json()["prefix"]]
    assert "token" not in listed[0] and "secret_sha256" not in listed[0]


def test_a_revoked_token_stops_working() -> None:
    project = make_project()
    camera = make_station(project)
    client = APIClient()
    client.force_authenticate(make_user(project, role="admin"))
    token = StationToken.objects.get(station=camera.station)

    assert client.post(f"/api/v1/station-tokens/{token.pk}/revoke").status_code == 204
    response = APIClient().get("/api/v1/inspections", headers=camera.auth)

    assert response.status_code == 401


def test_a_deactivated_stations_token_stops_working() -> None:
    camera = make_station(make_project())
    assert APIClient().get("/api/v1/inspections", headers=camera.auth).status_code == 200

    Station.objects.filter(pk=camera.station.pk).update(is_active=False)
    response = APIClient().get("/api/v1/inspections", headers=camera.auth)

    assert response.status_code == 401 and response.json()["detail"] == "Station is deactivated."


@pytest.mark.parametrize("raw", ["lps_ab\x00cd_secret", "lps_abcd_s\u00e9cret", "lps_ab\tcd_secret"])
def test_a_token_with_control_or_non_ascii_characters_is_malformed(raw: str) -> None:
    token = raw.encode().decode("unicode_escape")

    response = APIClient().get("/api/v1/inspections", headers={"Authorization": f"Station {token}"})

    assert response.status_code == 401 and response.json()["detail"] == "Malformed station token."


@pytest.mark.parametrize("role", ["annotator", "reviewer", "manager"])
def test_only_project_admins_manage_stations_and_tokens(role: str) -> None:
    project = make_project()
    camera = make_station(project)
    client = APIClient()
    client.force_authenticate(make_user(project, role=role))
    token = StationToken.objects.get(station=camera.station)

    created = client.post("/api/v1/stations", {"project": project.pk, "line": "L", "name": "X"}, format="json")
    issued = client.post(f"/api/v1/stations/{camera.station.pk}/tokens", {}, format="json")
    revoked = client.post(f"/api/v1/station-tokens/{token.pk}/revoke")

    assert (created.status_code, issued.status_code, revoked.status_code) == (403, 403, 404)
    assert Station.objects.count() == 1
    assert StationToken.objects.filter(revoked_at__isnull=True).count() == 1


def test_an_admin_of_another_project_cannot_touch_these_stations() -> None:
    project, other = make_project(), make_project()
    camera = make_station(project)
    client = APIClient()
    client.force_authenticate(make_user(other, role="admin"))
    token = StationToken.objects.get(station=camera.station)

    assert (
        client.post("/api/v1/stations", {"project": project.pk, "line": "L", "name": "X"}, format="json").status_code
        == 404
    )
    assert client.post(f"/api/v1/stations/{camera.station.pk}/tokens", {}, format="json").status_code == 404
    assert client.post(f"/api/v1/station-tokens/{token.pk}/revoke").status_code == 404
    assert client.get("/api/v1/stations").json()["results"] == []


def test_a_token_whose_audit_row_cannot_be_written_is_not_issued(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import DatabaseError

    from inspection.services import projects

    station = make_station(make_project()).station
    tokens_before = StationToken.objects.count()

    def failing_audit(**_: Any) -> None:
        raise DatabaseError("disk full")  # the database fails between the two writes

    monkeypatch.setattr(projects, "audit_record", failing_audit)
    with pytest.raises(DatabaseError):
        projects.station_token_issue(station=station, label="night shift")

    assert StationToken.objects.count() == tokens_before  # no token that nobody can account for
