"""Password sign-in for people, limited per account (bad-inputs case 8).

The DRF throttle keys on the client address, which a client behind no trusted proxy can
rotate with ``X-Forwarded-For``. This backend keys on the account: every attempt first takes
a slot from an atomic Redis counter (``INCR``) that lives ``LOUPE_LOGIN_LOCKOUT_SECONDS``, so
of any number of concurrent tries at most ``LOUPE_LOGIN_MAX_FAILURES`` ever reach the
password check; the rest are refused without hashing anything. A successful sign-in clears
the count. Being the only backend, it guards every way in: the API, the sign-in page and the
admin.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied

LOCKED_OUT = "loupe_sign_in_locked_out"  # set on the request when a try was refused


def _key(username: str) -> str:
    # Hashed: usernames are not put into cache keys verbatim (length, odd characters).
    return "loupe:sign-in:" + hashlib.sha256(username.strip().lower().encode()).hexdigest()


class LockoutModelBackend(ModelBackend):
    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if username is None:
            username = kwargs.get("username", "")
        key = _key(str(username))
        cache.add(key, 0, timeout=settings.LOUPE_LOGIN_LOCKOUT_SECONDS)  # starts the window once
        if cache.incr(key) > settings.LOUPE_LOGIN_MAX_FAILURES:
            if request is not None:
                setattr(request, LOCKED_OUT, True)
            raise PermissionDenied  # django.contrib.auth.authenticate stops here: no other backend
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            cache.delete(key)
        return user
