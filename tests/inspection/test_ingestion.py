"""A station posts part images; only clean images are stored, exactly once."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from PIL import Image as PILImage
from rest_framework.test import APIClient

from inspection.models import Image, Inspection, Part
from tests.factories import StationWithToken, make_project, make_station, make_user, part_jpeg, png_bytes, upload

pytestmark = pytest.mark.django_db

URL = "/api/v1/inspections"


def stored_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [path for path in root.rglob("*") if path.is_file()]


def post_image(
    client: APIClient, sender: StationWithToken, content: bytes, *, name: str = "part.jpg", **fields: str
) -> Any:
    data = {"part_serial": fields.pop("part_serial", "SN-1"), "image": upload(content, name), **fields}
    return client.post(URL, data, format="multipart", headers=sender.auth)


@pytest.fixture
def station() -> StationWithToken:
    return make_station(make_project())


@pytest.fixture
def client() -> APIClient:
    return APIClient()


def test_station_post_answers_202_with_the_inspection_id_and_queues_inference(
    client: APIClient, station: StationWithToken, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = post_image(client, station, part_jpeg(), sku="SKU-9", lot="L1")

    assert response.status_code == 202
    body = response.json()
    inspection = Inspection.objects.get(pk=body["id"])
    assert inspection.status == "pending"
    assert inspection.part.serial == "SN-1" and inspection.part.sku == "SKU-9"
    assert body["image"]["url"] == f"/api/v1/inspections/{inspection.pk}/image"
    assert len(callbacks) == 1  # exactly one inference enqueued


def test_a_station_post_is_one_short_transaction_on_the_line_hot_path(
    client: APIClient, station: StationWithToken, django_assert_max_num_queries: Any
) -> None:
    # Token check (and, at most once a minute, its last-used time), then BEGIN, image, part,
    # inspection, COMMIT: the answer is written from what was inserted, nothing is read back.
    with django_assert_max_num_queries(7):
        response = post_image(client, station, part_jpeg(), part_serial="HOT-1", sku="SKU-1")

    assert response.status_code == 202
    body = response.json()
    assert body["part"]["serial"] == "HOT-1" and body["part"]["sku"] == "SKU-1" and body["verdict"] is None
    assert body["station"]["line"] == station.station.line.name and body["image"]["width"] > 0


def test_a_second_view_of_a_known_part_keeps_the_part_as_first_posted(
    client: APIClient, station: StationWithToken
) -> None:
    first = post_image(client, station, part_jpeg(seed=1), part_serial="TWO-VIEWS", sku="SKU-A", lot="L1")
    second = post_image(client, station, part_jpeg(seed=2), part_serial="TWO-VIEWS", sku="SKU-B", lot="L2")

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["part"]["id"] == second.json()["part"]["id"]
    assert second.json()["part"]["sku"] == "SKU-A" and Part.objects.get(serial="TWO-VIEWS").lot == "L1"


def test_same_idempotency_key_returns_the_same_inspection_and_queues_nothing_more(
    client: APIClient, station: StationWithToken, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        first = post_image(client, station, part_jpeg(1), idempotency_key="cam1-000042")
        again = client.post(
            URL,
            {"part_serial": "SN-1", "image": upload(part_jpeg(1))},
            format="multipart",
            headers={**station.auth, "Idempotency-Key": "cam1-000042"},
        )

    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Inspection.objects.count() == 1 and Image.objects.count() == 1
    assert len(callbacks) == 1


def test_resending_the_same_image_without_a_key_is_deduplicated_by_content(
    client: APIClient, station: StationWithToken, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        first = post_image(client, station, part_jpeg(2))
        again = post_image(client, station, part_jpeg(2))

    assert (first.status_code, again.status_code) == (202, 200)
    assert Inspection.objects.count() == 1
    assert len(callbacks) == 1


def test_reusing_an_idempotency_key_for_a_different_image_is_a_conflict(
    client: APIClient, station: StationWithToken
) -> None:
    post_image(client, station, part_jpeg(3), idempotency_key="k-1")

    response = post_image(client, station, part_jpeg(4), idempotency_key="k-1")

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_reused"
    assert Inspection.objects.count() == 1


def test_the_same_image_is_stored_once_for_two_parts(client: APIClient, station: StationWithToken) -> None:
    post_image(client, station, part_jpeg(5), part_serial="A")
    post_image(client, station, part_jpeg(5), part_serial="B")

    assert Inspection.objects.count() == 2
    assert Image.objects.count() == 1
    assert len(stored_files()) == 1


# --- bad images: 400 with a reason, and no row and no file ---------------------------------


def _png_with_chunk(chunk_type: bytes, payload: bytes) -> bytes:
    base = png_bytes()
    chunk = struct.pack(">I", len(payload)) + chunk_type + payload
    chunk += struct.pack(">I", zlib.crc32(chunk_type + payload) & 0xFFFFFFFF)
    return base[:33] + chunk + base[33:]  # after the 8-byte signature and the IHDR chunk


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def _truncated_jpeg() -> bytes:
    whole = part_jpeg(6)
    return whole[: len(whole) // 2]


def _ztxt_bomb() -> bytes:
    # 100 MB of text, compressed to ~100 KB, in a zTXt chunk.
    return _png_with_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * 100_000_000, 9))


BAD_IMAGES = [
    pytest.param(lambda: _png_declaring(60_000, 60_000), "too_many_pixels", id="png-bomb-60000x60000"),
    pytest.param(lambda: _png_declaring(9_000, 9_000), "too_many_pixels", id="png-over-pixel-cap"),
    pytest.param(_truncated_jpeg, "corrupt_image", id="truncated-jpeg"),
    pytest.param(lambda: b"", "empty_image", id="zero-bytes"),
    pytest.param(lambda: b"<html><script>alert(1)</script></html>", "unsupported_format", id="html-renamed-jpg"),
    pytest.param(
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "unsupported_format", id="svg"
    ),
    pytest.param(lambda: b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "unsupported_format", id="pdf"),
    pytest.param(lambda: b"SIMPLE  =                    T" + b" " * 50, "unsupported_format", id="fits"),
    pytest.param(lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n", "unsupported_format", id="eps"),
    pytest.param(lambda: bytes(range(256)) * 40, "unsupported_format", id="random-bytes"),
    pytest.param(lambda: b"\xff\xd8\xff" + b"\x00" * 64, "corrupt_image", id="jpeg-magic-then-garbage"),
    pytest.param(_ztxt_bomb, "corrupt_image", id="png-100MB-ztxt-chunk"),
    pytest.param(lambda: b"II*\x00" + b"\xff" * 64, "corrupt_image", id="tiff-with-bad-ifd"),
]


@pytest.mark.parametrize(("make_content", "code"), BAD_IMAGES)
def test_bad_image_is_refused_with_400_and_leaves_no_row_and_no_file(
    client: APIClient, station: StationWithToken, make_content: Callable[[], bytes], code: str
) -> None:
    response = post_image(client, station, make_content())

    assert response.status_code == 400, response.content
    assert response.json()["code"] == code
    assert response.json()["detail"]  # a reason a device operator can act on
    assert (Inspection.objects.count(), Image.objects.count(), Part.objects.count()) == (0, 0, 0)
    assert stored_files() == []


def test_an_image_over_the_byte_cap_is_refused_with_413(
    client: APIClient, station: StationWithToken, settings: Any
) -> None:
    settings.LOUPE_MAX_UPLOAD_BYTES = 2048

    response = post_image(client, station, part_jpeg(7) + b"\x00" * 4096)

    assert response.status_code == 413
    assert Inspection.objects.count() == 0 and stored_files() == []


def test_client_file_names_never_reach_the_storage_key(client: APIClient, station: StationWithToken) -> None:
    for index, name in enumerate(
        ["../../etc/passwd", "/etc/shadow.jpg", "a\u202egpj.exe", "x" * 10_000 + ".jpg", "evil\x00.jpg"]
    ):
        response = post_image(client, station, part_jpeg(10 + index), name=name, part_serial=f"P{index}")
        assert response.status_code == 202, response.content

    media_root = Path(settings.MEDIA_ROOT).resolve()
    for image in Image.objects.all():
        assert image.file == f"images/{image.sha256[:2]}/{image.sha256}.jpg"
    for path in stored_files():
        assert path.resolve().is_relative_to(media_root)


def test_exif_orientation_is_applied_and_all_metadata_stripped(client: APIClient, station: StationWithToken) -> None:
    picture = PILImage.new("RGB", (40, 20), (200, 10, 10))
    exif = PILImage.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    exif[0x010F] = "SecretCam"  # Make
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", exif=exif.tobytes())

    response = post_image(client, station, buffer.getvalue())

    assert response.status_code == 202
    image = Image.objects.get()
    assert (image.width, image.height) == (20, 40)  # what a browser shows
    assert response.json()["image"]["width"] == 20
    stored = (Path(settings.MEDIA_ROOT) / image.file).read_bytes()
    assert b"Exif" not in stored and b"SecretCam" not in stored
    assert PILImage.open(io.BytesIO(stored)).getexif().get(0x0112) is None


def test_an_html_polyglot_jpeg_is_served_back_as_an_inert_image(client: APIClient, station: StationWithToken) -> None:
    polyglot = part_jpeg(20) + b"<html><script>alert(document.cookie)</script></html>"
    inspection_id = post_image(client, station, polyglot).json()["id"]
    viewer = make_user(station.station.project, role="reviewer")
    client.force_authenticate(viewer)

    response: Any = client.get(f"/api/v1/inspections/{inspection_id}/image")

    body = b"".join(response.streaming_content)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert b"<script>" not in body  # re-encoding dropped the payload


# --- station credentials ---------------------------------------------------------------------


def test_a_station_token_of_line_x_cannot_post_for_a_station_of_line_y(client: APIClient) -> None:
    from inspection.services import station_create

    project = make_project()
    camera_x = make_station(project)
    camera_y = make_station(project)
    camera_y.station = station_create(project=project, line_name="Line Y", station_name="Camera Y")

    response = post_image(client, camera_x, part_jpeg(), station=str(camera_y.station.pk))

    assert response.status_code == 403
    assert response.json()["code"] == "wrong_station"
    assert Inspection.objects.count() == 0


def test_a_revoked_token_is_refused_on_the_next_request(client: APIClient, station: StationWithToken) -> None:
    from inspection.services import station_token_revoke

    assert post_image(client, station, part_jpeg(1), part_serial="before").status_code == 202
    station_token_revoke(token=station.station.tokens.get())

    response = post_image(client, station, part_jpeg(2), part_serial="after")

    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_an_expired_token_is_refused(client: APIClient, station: StationWithToken) -> None:
    from django.utils import timezone

    station.station.tokens.update(expires_at=timezone.now())

    response = post_image(client, station, part_jpeg())

    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


@pytest.mark.parametrize("header", ["Station lps_nope_nope", "Station garbage", "Station " + "x" * 500])
def test_an_unknown_or_malformed_token_is_refused(client: APIClient, header: str) -> None:
    response = client.post(
        URL, {"part_serial": "A", "image": upload(part_jpeg())}, format="multipart", headers={"Authorization": header}
    )

    assert response.status_code == 401


def test_a_person_cannot_post_as_a_station(client: APIClient, station: StationWithToken) -> None:
    client.force_authenticate(make_user(station.station.project, role="admin"))

    response = client.post(URL, {"part_serial": "A", "image": upload(part_jpeg())}, format="multipart")

    assert response.status_code == 403


def test_a_station_reads_only_its_own_inspections(client: APIClient) -> None:
    project = make_project()
    camera_x, camera_y = make_station(project), make_station(project)
    mine = post_image(client, camera_x, part_jpeg(1), part_serial="X1").json()["id"]
    theirs = post_image(client, camera_y, part_jpeg(2), part_serial="Y1").json()["id"]

    assert client.get(f"{URL}/{mine}", headers=camera_x.auth).status_code == 200
    assert client.get(f"{URL}/{theirs}", headers=camera_x.auth).status_code == 404
