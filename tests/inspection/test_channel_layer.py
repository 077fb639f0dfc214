"""Pushes from synchronous code (services, Celery tasks) to channel-layer groups."""

from __future__ import annotations

import threading
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from inspection import channel_layer
from inspection.channel_layer import group_send


def test_pushes_from_sync_code_reach_the_group_in_order_through_one_long_lived_event_loop() -> None:
    layer = get_channel_layer()
    group = f"test-{uuid.uuid4().hex[:8]}"
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)

    group_send(group, {"type": "test.event", "n": 1})
    first_loop = channel_layer._loop
    # Another thread (a second Celery thread, a web request) shares the same loop.
    sender = threading.Thread(target=group_send, args=(group, {"type": "test.event", "n": 2}))
    sender.start()
    sender.join()

    received = [async_to_sync(layer.receive)(channel)["n"] for _ in range(2)]
    assert received == [1, 2]
    assert first_loop is not None and first_loop.is_running()
    assert channel_layer._loop is first_loop
