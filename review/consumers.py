"""The reviewers' live feed. Transport only: authenticate, join allowed groups, forward.

Rights are re-read at most every ``LOUPE_WS_RECHECK_SECONDS`` while events flow: after a
logout, a role revocation or a deactivation, pushes stop within that time and the socket
is closed. A client flooding the socket is disconnected; frames are capped by the server.
"""

from __future__ import annotations

import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from rest_framework.exceptions import ParseError

from inspection.notifications import training_group
from inspection.parsers import SafeJSONParser, decode
from review.notifications import review_group
from review.selectors import SocketGrants, socket_grants

# More client messages than this per second is a flood: the socket is closed.
MAX_MESSAGES_PER_SECOND = 20


class ReviewConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    """``/ws/review/``: pushes ``review.item.*`` events for every project where the user may
    review, and ``training.progress`` and ``drift.*`` for projects they manage. Anonymous sockets are refused
    before any group is joined."""

    joined: set[str]
    grants: SocketGrants
    checked_at: float

    async def connect(self) -> None:
        self.joined = set()
        self.window = (0.0, 0)
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=4401)
            return
        self.grants = await self._grants()
        await self._sync_groups()
        await self.accept()
        await self.send_json(
            {"event": "hello", "payload": {"projects": self.grants.review, "training": self.grants.managed}}
        )

    async def _grants(self) -> SocketGrants:
        session = self.scope.get("session")
        self.checked_at = time.monotonic()
        grants: SocketGrants = await database_sync_to_async(socket_grants)(
            user_id=self.scope["user"].pk, session_key=getattr(session, "session_key", None)
        )
        return grants

    async def _sync_groups(self) -> None:
        wanted = {review_group(pid) for pid in self.grants.review} | {
            training_group(pid) for pid in self.grants.managed
        }
        for group in self.joined - wanted:
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in wanted - self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        self.joined = wanted

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", set()):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined = set()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Every frame counts against the flood limit; one that is not JSON text (binary, empty,
        malformed, nested too deep) is answered with an error and the socket stays open."""
        started, count = self.window
        now = time.monotonic()
        self.window = (now, 1) if now - started > 1.0 else (started, count + 1)
        if self.window[1] > MAX_MESSAGES_PER_SECOND:
            await self.close(code=4429)
            return
        try:
            if text_data is None:
                raise ParseError("Frames must be JSON text.")
            body = text_data.encode()
            SafeJSONParser().check(body)
            content = decode(body)
        except ParseError as refused:
            await self.send_json({"event": "error", "payload": {"code": "bad_message", "detail": str(refused.detail)}})
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            return
        if content.get("type") == "ping":
            await self.send_json({"event": "pong"})
        elif content.get("type") == "subscribe":
            # Subscriptions are decided by the server from the user's roles; a request for a
            # project outside them is refused and joins nothing. Rights granted since the last
            # check count (re-read at most every LOUPE_WS_RECHECK_SECONDS).
            if not await self._recheck():
                return
            project = content.get("project")
            allowed = isinstance(project, int) and project in self.grants.review
            reply = {"project": project, "code": None if allowed else "forbidden"}
            await self.send_json({"event": "subscribed" if allowed else "error", "payload": reply})

    async def _recheck(self) -> bool:
        """Re-read the user's rights when they are older than the recheck interval; False when
        the socket was closed because the user may no longer use it."""
        if time.monotonic() - self.checked_at > settings.LOUPE_WS_RECHECK_SECONDS:
            self.grants = await self._grants()
            if not self.grants.active:
                await self.close(code=4403)
                return False
            await self._sync_groups()
        return True

    async def review_event(self, message: dict[str, Any]) -> None:
        if not await self._recheck():
            return
        # Training progress and drift alerts go to managers; review items to reviewers.
        allowed = self.grants.managed if message.get("kind") in {"training", "drift"} else self.grants.review
        if message.get("project") not in allowed:
            return  # rights changed since this event was queued
        await self.send_json({"event": message["event"], "payload": message["payload"]})
