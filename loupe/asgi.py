"""ASGI entry point: HTTP through Django, websockets through Channels.

The HTTP side is wrapped in a body-size guard: Django's ASGI handler spools the whole body
before any view runs, so an oversized upload must be refused here, from the Content-Length
header or while streaming, with 413 and without reading the rest (bad-inputs case 16).
"""

from __future__ import annotations

import json
import os
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponseBase

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loupe.settings")
django.setup(set_prefix=False)


class SyncViewsASGIHandler(ASGIHandler):
    """Django's ASGI handler, with the middleware chain and the view run in one thread hop.

    Every Loupe view is synchronous (Django REST framework). Under the stock handler each of
    Django's async-capable middleware runs its request and response hooks through
    ``sync_to_async`` (a hop to a thread and back each), WhiteNoise (sync only) crosses back
    to the event loop and out again, and the view hops once more: ~15 hops per request. Here
    the chain is loaded in sync mode and runs as under WSGI, inside one ``sync_to_async``;
    the body is still read, and the response still sent, on the event loop.
    """

    def __init__(self) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = await sync_to_async(self.get_response, thread_sensitive=True)(request)
        return response


django_asgi_app = SyncViewsASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from review.routing import websocket_urlpatterns  # noqa: E402

Scope = dict[str, Any]

# Multipart framing and the metadata fields around the image file.
_MULTIPART_OVERHEAD_BYTES = 256 * 1024


class RequestBodyLimit:
    """Answer 413 to any HTTP request whose body exceeds ``max_body_bytes``."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _send_413(send, self.max_body_bytes)
            return
        received = 0
        exceeded = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, exceeded
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    # Django treats a disconnect while reading as an aborted request and
                    # sends nothing; the spooled body is closed and deleted.
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, limited_receive, send)
        if exceeded:
            await _send_413(send, self.max_body_bytes)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Any, limit: int) -> None:
    body = json.dumps({"code": "payload_too_large", "detail": f"Request body is larger than {limit} bytes."}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


application = ProtocolTypeRouter(
    {
        "http": RequestBodyLimit(django_asgi_app, settings.LOUPE_MAX_UPLOAD_BYTES + _MULTIPART_OVERHEAD_BYTES),
        # OriginValidator with an explicit list (never "*"), in every configuration: a
        # handshake from another origin is refused even with a valid session cookie.
        "websocket": OriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
            settings.WEBSOCKET_ALLOWED_ORIGINS,
        ),
    }
)
