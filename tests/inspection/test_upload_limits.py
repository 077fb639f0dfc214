"""Upload limits enforced at the ASGI edge, against the real server process."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from inspection.models import Image, Inspection, Part
from tests.conftest import LiveStack
from tests.factories import make_project, make_station

pytestmark = pytest.mark.django_db(transaction=True)


def raw_request(live: LiveStack, head: str, body: bytes, *, read_reply: bool = True) -> tuple[bytes, socket.socket]:
    host, port = live.base_url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    conn.sendall(head.encode() + body)
    reply = b""
    if read_reply:
        while b"\r\n\r\n" not in reply:
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply, conn


def multipart_head(live: LiveStack, token: str, content_length: int) -> str:
    return (
        "POST /api/v1/inspections HTTP/1.1\r\n"
        f"Host: {live.base_url.removeprefix('http://')}\r\n"
        f"Authorization: Station {token}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    )


def test_an_upload_declaring_more_than_the_cap_gets_413_before_the_body_is_sent(live: LiveStack) -> None:
    station = make_station(make_project())
    declared = 10 * 1024**3  # 10 GiB, of which we send a few bytes

    started = time.monotonic()
    reply, conn = raw_request(live, multipart_head(live, station.token, declared), b"--XyZ\r\n")
    conn.close()

    assert reply.startswith(b"HTTP/1.1 413")
    assert time.monotonic() - started < 5
    assert Inspection.objects.count() == 0


def test_a_chunked_upload_that_grows_past_the_cap_gets_413(live: LiveStack) -> None:
    from django.conf import settings

    station = make_station(make_project())
    head = (
        "POST /api/v1/inspections HTTP/1.1\r\n"
        f"Host: {live.base_url.removeprefix('http://')}\r\n"
        f"Authorization: Station {station.token}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    host, port = live.base_url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=20)
    conn.sendall(head.encode())
    chunk = b"A" * (1024 * 1024)
    reply = b""
    try:
        for _ in range(settings.LOUPE_MAX_UPLOAD_BYTES // len(chunk) + 2):
            conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        conn.settimeout(10)
        reply = conn.recv(65536)
    except (BrokenPipeError, ConnectionResetError):
        reply = conn.recv(65536)
    finally:
        conn.close()

    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert Inspection.objects.count() == 0


def test_a_stalled_partial_upload_leaves_no_row_no_file_and_no_temp_file(live: LiveStack) -> None:
    from django.conf import settings

    station = make_station(make_project())
    temp_dirs = [Path(settings.FILE_UPLOAD_TEMP_DIR)]
    before = {d: set(os.listdir(d)) for d in temp_dirs}
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        + b"\xff\xd8\xff"
        + b"0" * 200_000
    )

    _, conn = raw_request(live, multipart_head(live, station.token, len(body) + 5_000_000), body, read_reply=False)
    time.sleep(1.0)
    conn.close()  # the client goes away mid-body
    time.sleep(1.0)

    assert (Inspection.objects.count(), Image.objects.count(), Part.objects.count()) == (0, 0, 0)
    assert not [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    leftovers = {d: set(os.listdir(d)) - before[d] for d in temp_dirs}
    assert not any(leftovers.values()), leftovers
