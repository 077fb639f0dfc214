"""A station sends a big image in chunks and resumes after the connection drops."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from inspection.models import Inspection, Upload
from inspection.services import upload_path, uploads_purge_expired
from tests.factories import StationWithToken, make_project, make_station, part_jpeg

pytestmark = pytest.mark.django_db

CHUNK_TYPE = "application/offset+octet-stream"


@pytest.fixture
def station() -> StationWithToken:
    return make_station(make_project())


def start(client: APIClient, station: StationWithToken, length: int) -> str:
    response: Any = client.post("/api/v1/uploads", headers={**station.auth, "Upload-Length": str(length)})
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def send(client: APIClient, station: StationWithToken, upload_id: str, offset: int, chunk: bytes) -> Any:
    return client.patch(
        f"/api/v1/uploads/{upload_id}",
        chunk,
        content_type=CHUNK_TYPE,
        headers={**station.auth, "Upload-Offset": str(offset)},
    )


def test_an_interrupted_upload_resumes_from_the_servers_offset_and_becomes_an_inspection(
    station: StationWithToken,
) -> None:
    client = APIClient()
    image = part_jpeg(3)
    upload_id = start(client, station, len(image))
    half = len(image) // 2
    assert send(client, station, upload_id, 0, image[:half]).status_code == 204
    # ... the connection drops; the station asks where to go on from:
    resumed_at = int(client.get(f"/api/v1/uploads/{upload_id}", headers=station.auth)["Upload-Offset"])
    assert resumed_at == half

    finished = send(client, station, upload_id, resumed_at, image[resumed_at:])
    posted: Any = client.post(
        "/api/v1/inspections", {"part_serial": "BIG-1", "upload": upload_id}, format="multipart", headers=station.auth
    )

    assert finished.status_code == 204 and finished["Upload-Offset"] == str(len(image))
    assert posted.status_code == 202, posted.content
    inspection = Inspection.objects.get(pk=posted.json()["id"])
    assert inspection.part.serial == "BIG-1"
    assert not Upload.objects.exists()  # consumed


def test_a_chunk_at_the_wrong_offset_is_a_conflict_and_writes_nothing(station: StationWithToken) -> None:
    client = APIClient()
    upload_id = start(client, station, 100)
    send(client, station, upload_id, 0, b"a" * 40)

    response = send(client, station, upload_id, 10, b"b" * 40)

    assert response.status_code == 409
    assert response.json()["code"] == "offset_mismatch"
    assert Upload.objects.get().offset == 40
    assert upload_path(Upload.objects.get()).read_bytes() == b"a" * 40


def test_a_chunk_past_the_announced_length_is_refused(station: StationWithToken) -> None:
    client = APIClient()
    upload_id = start(client, station, 10)

    assert send(client, station, upload_id, 0, b"x" * 11).status_code == 413
    assert Upload.objects.get().offset == 0


def test_announcing_more_than_the_byte_cap_is_refused_with_413(station: StationWithToken, settings: Any) -> None:
    settings.LOUPE_MAX_UPLOAD_BYTES = 1000

    response = APIClient().post("/api/v1/uploads", headers={**station.auth, "Upload-Length": "1001"})

    assert response.status_code == 413
    assert not Upload.objects.exists()


def test_an_incomplete_upload_cannot_become_an_inspection(station: StationWithToken) -> None:
    client = APIClient()
    upload_id = start(client, station, 500)
    send(client, station, upload_id, 0, b"\xff\xd8\xff")

    response: Any = client.post(
        "/api/v1/inspections", {"part_serial": "P", "upload": upload_id}, format="multipart", headers=station.auth
    )

    assert response.status_code == 409
    assert response.json()["code"] == "upload_incomplete"
    assert not Inspection.objects.exists()


def test_a_station_cannot_see_or_extend_another_stations_upload(station: StationWithToken) -> None:
    client = APIClient()
    other = make_station(station.station.project)
    upload_id = start(client, station, 100)

    assert client.get(f"/api/v1/uploads/{upload_id}", headers=other.auth).status_code == 404
    assert send(client, other, upload_id, 0, b"x").status_code == 404
    assert Upload.objects.get().offset == 0


def test_abandoned_uploads_are_purged_with_their_files(station: StationWithToken) -> None:
    client = APIClient()
    stale, fresh = start(client, station, 10), start(client, station, 10)
    Upload.objects.filter(pk=stale).update(expires_at=timezone.now() - timedelta(seconds=1))
    stale_path = upload_path(Upload.objects.get(pk=stale))

    assert uploads_purge_expired() == 1
    assert list(Upload.objects.values_list("pk", flat=True)) == [Upload.objects.get(pk=fresh).pk]
    assert not stale_path.exists()


def test_sending_both_an_image_and_an_upload_is_refused(station: StationWithToken) -> None:
    from tests.factories import upload as file_upload

    client = APIClient()
    upload_id = start(client, station, 10)

    response: Any = client.post(
        "/api/v1/inspections",
        {"part_serial": "P", "upload": upload_id, "image": file_upload(part_jpeg())},
        format="multipart",
        headers=station.auth,
    )

    assert response.status_code == 400
