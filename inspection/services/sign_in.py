"""Signing people in through the API."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate

from inspection.auth_backends import LOCKED_OUT
from inspection.errors import TooManyAttempts


def sign_in_attempt(*, request: Any, username: str, password: str) -> Any | None:
    """The user if the credentials are right; None if not; TooManyAttempts once the account
    has used up its tries (``inspection.auth_backends.LockoutModelBackend``)."""
    user = authenticate(request, username=username, password=password)
    if getattr(request, LOCKED_OUT, False):
        minutes = max(1, settings.LOUPE_LOGIN_LOCKOUT_SECONDS // 60)
        raise TooManyAttempts(
            f"Too many failed sign-ins for this account; try again in about {minutes} minutes.",
            code="locked_out",
            retry_after=settings.LOUPE_LOGIN_LOCKOUT_SECONDS,
        )
    if user is None or not user.is_active:
        return None
    return user
