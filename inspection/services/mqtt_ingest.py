"""Part images submitted over MQTT by stations that speak MQTT rather than HTTP.

A station publishes JSON to ``<prefix>/ingest``:
``{"token", "part_serial", "image_base64", "sku"?, "lot"?, "captured_at"?, "idempotency_key"?}``.
The token is a station token, checked exactly as on the HTTP API; the image goes through the
same checks and the same idempotent ``inspection_submit``. The answer (the inspection id, or
a reason) is published to ``<prefix>/ingest/replies/<station id>``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIRequestFactory

from inspection.auth import StationTokenAuthentication
from inspection.errors import DomainError, InvalidInput
from inspection.services.inspections import inspection_submit

# An MQTT message carries the image base64-encoded: 4/3 of the byte cap, plus metadata.
MAX_MESSAGE_BYTES = settings.LOUPE_MAX_UPLOAD_BYTES * 4 // 3 + 64 * 1024


@dataclass(frozen=True)
class IngestReply:
    station_id: int | None
    body: dict[str, Any]


def _authenticate(token: str) -> Any:
    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Station {token}")
    result = StationTokenAuthentication().authenticate(request)
    if result is None:
        raise AuthenticationFailed("Missing station token.")
    return result[0].station


def mqtt_ingest_message(payload: bytes) -> IngestReply:
    """Handle one ingest message; never raises for bad input, answers with a reason instead."""
    if len(payload) > MAX_MESSAGE_BYTES:
        return IngestReply(None, {"status": 413, "code": "payload_too_large", "detail": "Message too large."})
    try:
        message = json.loads(payload)
        if not isinstance(message, dict):
            raise ValueError("not an object")
    except ValueError:
        return IngestReply(None, {"status": 400, "code": "invalid", "detail": "Message is not a JSON object."})
    try:
        station = _authenticate(str(message.get("token", "")))
    except AuthenticationFailed as refused:
        return IngestReply(None, {"status": 401, "code": "not_authenticated", "detail": str(refused.detail)})
    try:
        serial = message.get("part_serial")
        if not isinstance(serial, str) or not 0 < len(serial) <= 128:
            raise InvalidInput("part_serial is required (at most 128 characters).")
        try:
            image = base64.b64decode(str(message.get("image_base64", "")), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("image_base64 is not valid base64.") from None
        captured = parse_datetime(message["captured_at"]) if isinstance(message.get("captured_at"), str) else None
        key = message.get("idempotency_key")
        result = inspection_submit(
            station=station,
            image_file=io.BytesIO(image),
            part_serial=serial,
            sku=str(message.get("sku", ""))[:128],
            lot=str(message.get("lot", ""))[:128],
            captured_at=captured,
            idempotency_key=str(key)[:128] if key else None,
        )
    except DomainError as error:
        return IngestReply(station.pk, {"status": error.status, "code": error.code, "detail": error.detail})
    return IngestReply(
        station.pk,
        {"status": 202 if result.created else 200, "inspection": result.inspection.pk, "part_serial": serial},
    )
