"""The MQTT connection of a worker process (paho-mqtt), used to publish verdicts to the line.

One client per process, connected on first use with a background network loop; QoS 1
publishes wait for the broker's PUBACK so a task only succeeds once the broker has it.

Why the client acknowledges TCP segments at once (``TCP_QUICKACK`` after every read): a
broker writes each PUBACK of a batch as its own small segment, and with Nagle's algorithm
(Mosquitto's default, ``set_tcp_nodelay false``) it holds the second until the first is
acknowledged, which Linux delays by up to 40 ms. Measured against the local Mosquitto, eight
QoS 1 publishes waited 43.8 ms (median) for their PUBACKs with delayed ACKs and 1.0 ms with
quick ones; each inference batch pays that wait before its worker takes the next batch.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

_lock = threading.Lock()
_clients: dict[str, mqtt.Client] = {}


class QuickAckClient(mqtt.Client):
    """paho's client, acknowledging every TCP segment it reads at once (see the module)."""

    def _sock_recv(self, bufsize: int) -> bytes:
        data: bytes = super()._sock_recv(bufsize)
        sock: Any = getattr(self, "_sock", None)  # paho's socket: plain, TLS or a websocket wrapper
        # Linux leaves quick-ACK mode on its own, so the option is set again after each read.
        if sock is not None and hasattr(socket, "TCP_QUICKACK"):
            with contextlib.suppress(OSError, AttributeError):  # closing under us, or no such option
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return data


class MqttUnavailable(Exception):
    """The broker could not be reached or did not acknowledge in time (transient)."""


def _client(url: str) -> mqtt.Client:
    with _lock:
        client = _clients.get(url)
        if client is not None and client.is_connected():
            return client
        parsed = urlparse(url)
        client = QuickAckClient(CallbackAPIVersion.VERSION2, client_id=f"loupe-{uuid.uuid4().hex[:12]}")
        if parsed.username:
            client.username_pw_set(parsed.username, parsed.password)
        if parsed.scheme == "mqtts":
            client.tls_set()
        default_port = 8883 if parsed.scheme == "mqtts" else 1883
        try:
            client.connect(parsed.hostname or "127.0.0.1", parsed.port or default_port, keepalive=30)
        except OSError as error:
            raise MqttUnavailable(f"cannot reach MQTT broker: {error}") from None
        client.loop_start()
        _clients[url] = client
        return client


def publish(url: str, topic: str, payload: bytes, *, timeout_s: float = 5.0) -> None:
    """Publish with QoS 1 and wait for the broker's acknowledgement."""
    info = _client(url).publish(topic, payload, qos=1)
    try:
        info.wait_for_publish(timeout=timeout_s)
    except (RuntimeError, ValueError) as error:
        raise MqttUnavailable(str(error)) from None
    if not info.is_published():
        raise MqttUnavailable(f"no PUBACK within {timeout_s}s for {topic}")


def publish_many(url: str, messages: Sequence[tuple[str, bytes]], *, timeout_s: float = 5.0) -> list[int]:
    """Publish every ``(topic, payload)`` with QoS 1, then wait for the PUBACKs together: a
    batch costs about one broker round trip instead of one per message. Returns the indexes
    of the messages the broker did not acknowledge within ``timeout_s`` (every one when it
    cannot be reached)."""
    if not messages:
        return []
    try:
        client = _client(url)
    except MqttUnavailable:
        return list(range(len(messages)))
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    deadline = time.monotonic() + timeout_s
    unacknowledged = []
    for index, info in enumerate(infos):
        with contextlib.suppress(RuntimeError, ValueError):  # not queued: the connection dropped
            info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
        if not info.is_published():
            unacknowledged.append(index)
    return unacknowledged
