"""Part images submitted over MQTT by stations that speak MQTT rather than HTTP.

A station publishes JSON to ``<prefix>/ingest``:
``{"token", "part_serial", "image_base64", "sku"?, "lot"?, "captured_at"?, "idempotency_key"?}``.
The message is read by the HTTP API's JSON rules (``SafeJSONParser``), the token is checked
exactly as on the HTTP API, and the other fields go through the HTTP API's
``InspectionCreateInputSerializer``: both paths refuse the same things with the same reasons.
The image goes through the same idempotent ``inspection_submit``. The answer (the inspection
id, or a status, code and reason) is published to ``<prefix>/ingest/replies/<station id>``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from rest_framework.exceptions import AuthenticationFailed, ParseError

from inspection.auth import station_token_authenticate
from inspection.errors import DomainError, Forbidden, InvalidInput
from inspection.models import Station
from inspection.parsers import SafeJSONParser, decode
from inspection.serializers import InspectionCreateInputSerializer
from inspection.services.inspections import inspection_submit

logger = logging.getLogger(__name__)

# An MQTT message carries the image base64-encoded: 4/3 of the byte cap, plus metadata.
MAX_MESSAGE_BYTES = settings.LOUPE_MAX_UPLOAD_BYTES * 4 // 3 + 64 * 1024


@dataclass(frozen=True)
class IngestReply:
    station_id: int | None
    body: dict[str, Any]


def server_error_reply(station_id: int | None) -> IngestReply:
    """What a station hears when Loupe failed, not its message: sending it again may work."""
    return IngestReply(
        station_id,
        {"status": 500, "code": "server_error", "detail": "The message could not be ingested; send it again."},
    )


def _authenticate(token: object) -> Station:
    if not isinstance(token, str):
        raise AuthenticationFailed("Malformed station token.")
    principal, _ = station_token_authenticate(token)  # the HTTP API's own check
    return principal.station


def _refused_fields(errors: dict[str, Any]) -> InvalidInput:
    """The HTTP API's per-field reasons under ``errors``, and spelled out in ``detail``."""
    reasons = json.loads(json.dumps(errors))  # ErrorDetail and ReturnDict to plain JSON data
    summary = "; ".join(
        f"{field}: {found if isinstance(found, str) else ' '.join(map(str, found))}" for field, found in reasons.items()
    )
    return InvalidInput(f"Invalid input. {summary}", extra={"errors": reasons})


def _submit(station: Station, message: dict[str, Any]) -> dict[str, Any]:
    """The reply body for a message from an authenticated station; raises DomainError to refuse."""
    encoded = message.get("image_base64")
    if not isinstance(encoded, str) or not encoded:
        raise _refused_fields({"image_base64": ["This field is required (base64 text)."]})
    try:
        image = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("image_base64 is not valid base64.") from None
    # JSON null stands for a field left out, as a multipart form leaves it out.
    fields = {name: value for name, value in message.items() if name not in ("token", "image_base64")}
    fields = {name: value for name, value in fields.items() if value is not None}
    serializer = InspectionCreateInputSerializer(data={**fields, "image": ContentFile(image, name="mqtt-image")})
    if not serializer.is_valid():
        errors = dict(serializer.errors)
        if "image" in errors:  # the serializer's name for this message's image_base64
            errors["image_base64"] = errors.pop("image")
        raise _refused_fields(errors)
    valid = serializer.validated_data
    if "station" in valid and valid["station"] != station.pk:
        raise Forbidden("This token may only post for its own station.", code="wrong_station")
    result = inspection_submit(
        station=station,
        image_file=valid["image"],
        part_serial=valid["part_serial"],
        sku=valid["sku"],
        lot=valid["lot"],
        captured_at=valid.get("captured_at"),
        idempotency_key=valid.get("idempotency_key"),
    )
    return {
        "status": 202 if result.created else 200,
        "inspection": result.inspection.pk,
        "part_serial": valid["part_serial"],
    }


def mqtt_ingest_message(payload: bytes) -> IngestReply:
    """Handle one ingest message; answers bad input with a status and a reason, never raises for it.

    A failure after the station is known is logged and answered with a 500 on the station's
    reply topic; one before (the database down while the token is checked) propagates.
    """
    if len(payload) > MAX_MESSAGE_BYTES:
        return IngestReply(None, {"status": 413, "code": "payload_too_large", "detail": "Message too large."})
    try:
        SafeJSONParser().check(payload)  # the HTTP API's rules: bounded depth, no NaN, no NUL
        message = decode(payload)
    except ParseError as refused:
        return IngestReply(None, {"status": 400, "code": "parse_error", "detail": str(refused.detail)})
    if not isinstance(message, dict):
        return IngestReply(None, {"status": 400, "code": "invalid", "detail": "Message is not a JSON object."})
    try:
        station = _authenticate(message.get("token", ""))
    except AuthenticationFailed as refused:
        return IngestReply(None, {"status": 401, "code": "not_authenticated", "detail": str(refused.detail)})
    try:
        body = _submit(station, message)
    except DomainError as error:
        return IngestReply(
            station.pk, {**error.extra, "status": error.status, "code": error.code, "detail": error.detail}
        )
    except Exception:
        # The station listens on its own reply topic: answer there, not on the bridge's.
        logger.exception("MQTT ingest for station %s failed", station.pk)
        return server_error_reply(station.pk)
    return IngestReply(station.pk, body)
