"""The reviewers' live feed. Transport only: authenticate, join allowed groups, forward."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from inspection.notifications import training_group
from inspection.selectors import managed_project_ids
from review.notifications import review_group
from review.selectors import reviewable_project_ids


class ReviewConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    """``/ws/review/``: pushes ``review.item.added`` / ``review.item.decided`` events for every
    project where the user may review, and ``training.progress`` for projects they manage.
    Anonymous sockets are refused before any group is joined."""

    joined: list[str]

    async def connect(self) -> None:
        self.joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=4401)
            return
        project_ids = await database_sync_to_async(reviewable_project_ids)(user=user)
        managed_ids = await database_sync_to_async(managed_project_ids)(user=user)
        groups = [review_group(pid) for pid in project_ids] + [training_group(pid) for pid in managed_ids]
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)
        await self.accept()
        await self.send_json({"event": "hello", "payload": {"projects": project_ids, "training": managed_ids}})

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # Clients only listen; a ping keeps proxies from closing an idle socket.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"event": "pong"})

    async def review_event(self, message: dict[str, Any]) -> None:
        await self.send_json({"event": message["event"], "payload": message["payload"]})
