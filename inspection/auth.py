"""Station credentials: ``Authorization: Station <token>``.

A token is ``lps_<prefix>_<secret>``; the prefix finds the row, the SHA-256 of the whole
token is compared in constant time. Revoked, expired or inactive-station tokens fail on the
very next request (bad-inputs case 9).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from inspection.models import Station, StationToken

TOKEN_PREFIX = "lps_"  # noqa: S105  (a public prefix, not a secret)
KEYWORD = "Station"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class StationPrincipal:
    """``request.user`` for a station: authenticated, never staff, member of no project."""

    station: Station
    token: StationToken
    is_authenticated: bool = True
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False
    is_anonymous: bool = False

    @property
    def pk(self) -> None:
        return None


class StationTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[StationPrincipal, StationToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, raw = header.partition(" ")
        if keyword != KEYWORD:
            return None
        return station_token_authenticate(raw)

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


def station_token_authenticate(raw: str) -> tuple[StationPrincipal, StationToken]:
    """The station a raw token (``lps_<prefix>_<secret>``) stands for, or AuthenticationFailed
    with the reason: the one check for every way a station talks to Loupe (HTTP, MQTT)."""
    raw = raw.strip()
    parts = raw.split("_")
    # Printable ASCII only: a NUL in the prefix would reach PostgreSQL (a 500, not a 401).
    malformed = not (raw.isascii() and raw.isprintable())
    if malformed or not raw.startswith(TOKEN_PREFIX) or len(parts) != 3 or len(raw) > 128:
        raise exceptions.AuthenticationFailed("Malformed station token.")
    token = (
        StationToken.objects.select_related("station", "station__line", "station__project")
        .filter(prefix=parts[1])
        .first()
    )
    if token is None or not hmac.compare_digest(token.secret_sha256, hash_token(raw)):
        raise exceptions.AuthenticationFailed("Invalid station token.")
    now = timezone.now()
    if token.revoked_at is not None:
        raise exceptions.AuthenticationFailed("Station token has been revoked.")
    if token.expires_at is not None and token.expires_at <= now:
        raise exceptions.AuthenticationFailed("Station token has expired.")
    if not token.station.is_active:
        raise exceptions.AuthenticationFailed("Station is deactivated.")
    # Throttled write: at most once a minute per token.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        StationToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return StationPrincipal(station=token.station, token=token), token


def station_of(request: Request | Any) -> Station | None:
    user = getattr(request, "user", None)
    return user.station if isinstance(user, StationPrincipal) else None


class StationTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Documents the station credential in the OpenAPI schema."""

    target_class = "inspection.auth.StationTokenAuthentication"
    name = "stationToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Station <token>`: a station's token, issued by a project admin.",
        }
