"""Run the MQTT ingest bridge: stations publish part images, Loupe answers per station."""

from __future__ import annotations

import json
import logging
import signal
import threading
import uuid
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from paho.mqtt.enums import CallbackAPIVersion

from inspection.services.mqtt_ingest import mqtt_ingest_message, server_error_reply

logger = logging.getLogger(__name__)


class MqttIngestBridge:
    """Subscribes to ``<prefix>/ingest`` (QoS 1) and hands each message to the ingest service."""

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        parsed = urlparse(url)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"loupe-ingest-{uuid.uuid4().hex[:8]}")
        if parsed.username:
            self.client.username_pw_set(parsed.username, parsed.password)
        if parsed.scheme == "mqtts":
            self.client.tls_set()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.address = (parsed.hostname or "127.0.0.1", parsed.port or (8883 if parsed.scheme == "mqtts" else 1883))

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(f"{self.prefix}/ingest", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            close_old_connections()
            reply = mqtt_ingest_message(bytes(message.payload))
        except Exception:
            # paho calls this on its network thread and re-raises what escapes, which ends the
            # thread: the bridge would stop receiving while the process still looks alive.
            logger.exception("MQTT ingest message (%d bytes) failed", len(message.payload))
            reply = server_error_reply(None)
        finally:
            # As at the end of a request: the connection goes back to the pool (PostgreSQL) rather
            # than staying checked out by paho's thread, which outlives nothing when it stops.
            close_old_connections()
        topic = f"{self.prefix}/ingest/replies/{reply.station_id if reply.station_id else 'unauthenticated'}"
        client.publish(topic, json.dumps(reply.body), qos=1)

    def start(self) -> None:
        self.client.connect(*self.address, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Command(BaseCommand):
    help = "Accept part images over MQTT (topic <MQTT_TOPIC_PREFIX>/ingest)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.MQTT_URL:
            raise CommandError("Set MQTT_URL (e.g. mqtt://broker:1883) to run the MQTT ingest bridge.")
        bridge = MqttIngestBridge(settings.MQTT_URL, settings.MQTT_TOPIC_PREFIX)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        bridge.start()
        self.stdout.write(f"listening on {settings.MQTT_TOPIC_PREFIX}/ingest")
        stop.wait()
        bridge.stop()
