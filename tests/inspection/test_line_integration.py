"""Final verdicts reach the line: a real MQTT subscriber on the machine's broker receives them."""

from __future__ import annotations

import base64
import json
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from rest_framework.test import APIClient

from inspection.models import Project, Verdict
from inspection.services import inspection_run
from inspection.services.line_integration import verdict_publish_mqtt, verdict_topic, verdicts_publish_loaded
from inspection.tasks import verdict_publish_task
from review.models import ReviewItem
from review.services import review_decide
from tests.factories import StationWithToken, make_project, make_station, make_user, part_jpeg, upload

MQTT_URL = os.environ.get("MQTT_TEST_URL", "mqtt://127.0.0.1:1883")


def broker_reachable() -> bool:
    parsed = urlparse(MQTT_URL)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 1883), timeout=1):
            return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not broker_reachable(), reason=f"no MQTT broker at {MQTT_URL} (CI runs Mosquitto there)"),
]


@pytest.fixture
def subscriber() -> Any:
    received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
    subscribed: queue.Queue[bool] = queue.Queue()
    client.on_message = lambda _c, _u, message: received.put((message.topic, json.loads(message.payload)))
    client.on_subscribe = lambda *args: subscribed.put(True)
    parsed = urlparse(MQTT_URL)
    client.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883)
    client.loop_start()
    client.subscribe("loupe-test/#", qos=1)
    subscribed.get(timeout=5)
    yield received
    client.loop_stop()
    client.disconnect()


def test_a_final_verdict_is_published_to_its_line_and_station_topic(subscriber: Any, settings: Any) -> None:
    settings.MQTT_URL = MQTT_URL
    settings.MQTT_TOPIC_PREFIX = "loupe-test"
    project = make_project()
    station = make_station(project)
    reviewer = make_user(project)
    posted: Any = APIClient().post(
        "/api/v1/inspections", {"part_serial": "MQ-1", "sku": "S", "image": upload(part_jpeg())}, format="multipart",
        headers=station.auth,
    )  # fmt: skip
    inspection_run(inspection_id=posted.json()["id"])
    crack = project.defect_classes.get(name="crack")
    verdict = review_decide(
        item=ReviewItem.objects.get(part__serial="MQ-1"), reviewer=reviewer, outcome="fail", defect_class_id=crack.pk
    )
    assert verdict is not None

    assert verdict_publish_mqtt(verdict_id=verdict.pk) is True
    topic, message = subscriber.get(timeout=10)

    line_id = station.station.line_id
    assert topic == f"loupe-test/projects/{project.pk}/lines/{line_id}/stations/{station.station.pk}/verdicts"
    assert topic == verdict_topic(verdict)
    assert message["part_serial"] == "MQ-1" and message["verdict"] == "fail"
    assert message["defect_class"] == "crack" and message["source"] == "human"
    assert message["verdict_id"] == verdict.pk and message["captured_at"] and message["decided_at"]


def post_and_run_with_a_model_that_passes_everything(register: Any, serial: str) -> Verdict:
    project = make_project()
    Project.objects.filter(pk=project.pk).update(auto_pass_threshold=1.0, auto_fail_threshold=1.0, audit_rate=0.0)
    register(project, "classifier", status="deployed")
    posted: Any = APIClient().post(
        "/api/v1/inspections", {"part_serial": serial, "image": upload(part_jpeg())}, format="multipart",
        headers=make_station(project).auth,
    )  # fmt: skip
    inspection_run(inspection_id=posted.json()["id"])
    return Verdict.objects.get(part__serial=serial, is_final=True)


def test_a_model_verdict_is_published_by_the_worker_that_decided_it_right_after_the_commit(
    subscriber: Any, settings: Any, register: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.MQTT_URL = MQTT_URL
    settings.MQTT_TOPIC_PREFIX = "loupe-test"
    queued: list[int] = []
    monkeypatch.setattr(verdict_publish_task, "delay", queued.append)

    with django_capture_on_commit_callbacks(execute=True):
        verdict = post_and_run_with_a_model_that_passes_everything(register, "MQ-MODEL")

    topic, message = subscriber.get(timeout=10)
    assert topic == verdict_topic(verdict)
    assert (message["verdict_id"], message["verdict"], message["source"]) == (verdict.pk, "pass", "model")
    assert verdict.inspection is not None
    assert message["model_version"] == verdict.model_version and message["station"] == verdict.inspection.station_id
    assert queued == []  # no second message through the task queue


def test_a_batch_of_verdicts_is_published_in_one_go_and_every_message_arrives(
    subscriber: Any, settings: Any, register: Any, monkeypatch: Any
) -> None:
    settings.MQTT_URL = MQTT_URL
    settings.MQTT_TOPIC_PREFIX = "loupe-test"
    monkeypatch.setattr(verdict_publish_task, "delay", lambda verdict_id: None)
    verdicts = [post_and_run_with_a_model_that_passes_everything(register, f"MQ-BATCH-{n}") for n in range(5)]
    while not subscriber.empty():  # what the runs above published on their own
        subscriber.get_nowait()

    unacknowledged = verdicts_publish_loaded(verdicts)

    assert unacknowledged == []
    received = {subscriber.get(timeout=10)[1]["verdict_id"] for _ in verdicts}
    assert received == {verdict.pk for verdict in verdicts}


def test_a_batch_the_broker_does_not_acknowledge_is_handed_back_whole(
    settings: Any, register: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(verdict_publish_task, "delay", lambda verdict_id: None)
    verdicts = [post_and_run_with_a_model_that_passes_everything(register, f"MQ-LOST-{n}") for n in range(3)]
    settings.MQTT_URL = "mqtt://127.0.0.1:9"  # nothing listens on the discard port

    assert verdicts_publish_loaded(verdicts) == verdicts


def test_when_the_broker_does_not_answer_the_publish_task_takes_over_and_retries(
    settings: Any, register: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.MQTT_URL = "mqtt://127.0.0.1:9"  # nothing listens on the discard port
    queued: list[int] = []
    monkeypatch.setattr(verdict_publish_task, "delay", queued.append)

    with django_capture_on_commit_callbacks(execute=True):
        verdict = post_and_run_with_a_model_that_passes_everything(register, "MQ-DOWN")

    assert queued == [verdict.pk]


def test_an_acknowledged_verdict_is_marked_published_and_a_lost_one_is_left_for_the_outbox(
    subscriber: Any, settings: Any, register: Any, monkeypatch: Any
) -> None:
    settings.MQTT_TOPIC_PREFIX = "loupe-test"
    monkeypatch.setattr(verdict_publish_task, "delay", lambda verdict_id: None)
    acked, lost = (post_and_run_with_a_model_that_passes_everything(register, f"MQ-OUT-{n}") for n in range(2))

    settings.MQTT_URL = MQTT_URL
    verdicts_publish_loaded([acked])
    settings.MQTT_URL = "mqtt://127.0.0.1:9"  # nothing listens on the discard port
    verdicts_publish_loaded([lost])

    published = dict(Verdict.objects.filter(pk__in=[acked.pk, lost.pk]).values_list("pk", "published_at"))
    assert published[acked.pk] is not None and published[lost.pk] is None


def test_the_outbox_publishes_overdue_verdicts_once_and_leaves_recent_ones_to_their_publishers(
    subscriber: Any, settings: Any, register: Any, monkeypatch: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from inspection.services.line_integration import verdicts_publish_overdue

    settings.MQTT_TOPIC_PREFIX = "loupe-test"
    monkeypatch.setattr(verdict_publish_task, "delay", lambda verdict_id: None)
    # Decided while the broker was down: nobody acknowledged them.
    overdue, _recent, ancient = (
        post_and_run_with_a_model_that_passes_everything(register, f"MQ-DUE-{n}") for n in range(3)
    )
    Verdict.objects.filter(pk=overdue.pk).update(created_at=timezone.now() - timedelta(minutes=30))
    Verdict.objects.filter(pk=ancient.pk).update(created_at=timezone.now() - timedelta(days=2))
    assert not Verdict.objects.filter(published_at__isnull=False).exists()
    settings.MQTT_URL = MQTT_URL  # the broker is back

    first = verdicts_publish_overdue()
    _, message = subscriber.get(timeout=10)
    second = verdicts_publish_overdue()

    assert (first, second) == (1, 0)
    assert message["verdict_id"] == overdue.pk and message["part_serial"] == "MQ-DUE-0"
    assert subscriber.empty()  # the recent one is still its publishers' to retry; the old one is history
    assert set(Verdict.objects.filter(published_at__isnull=False).values_list("pk", flat=True)) == {overdue.pk}


@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="PostgreSQL's planner")
def test_the_outbox_finds_its_rows_through_its_own_index_not_by_reading_every_verdict() -> None:
    from datetime import timedelta

    from django.db import connection, transaction

    from inspection.services.line_integration import overdue_verdicts

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # an empty test table would be scanned whole
        plan = overdue_verdicts(older_than=timedelta(minutes=20), window=timedelta(hours=2)).explain()

    assert "verdict_unpublished_final" in plan, plan


def test_the_outbox_runs_every_ten_minutes_and_does_nothing_without_a_broker(settings: Any) -> None:
    from inspection.services.line_integration import verdicts_publish_overdue

    entry = settings.CELERY_BEAT_SCHEDULE["publish-overdue-verdicts"]
    settings.MQTT_URL = ""

    assert (entry["task"], entry["schedule"]) == ("inspection.publish_overdue_verdicts", 600.0)
    assert verdicts_publish_overdue() == 0


def test_without_a_broker_configured_nothing_is_published(subscriber: Any, settings: Any) -> None:
    settings.MQTT_URL = ""

    assert verdict_publish_mqtt(verdict_id=1) is False
    assert subscriber.empty()


def test_a_station_submits_a_part_image_over_mqtt_and_gets_its_inspection_id_back(
    settings: Any, transactional_db: None
) -> None:
    import base64

    from inspection.management.commands.mqtt_ingest import MqttIngestBridge
    from inspection.models import Inspection

    prefix = f"loupe-test-{uuid.uuid4().hex[:6]}"
    station = make_station(make_project())
    bridge = MqttIngestBridge(MQTT_URL, prefix)
    bridge.start()
    assert bridge.subscribed.wait(5)
    replies: queue.Queue[dict[str, Any]] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"station-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda _c, _u, message: replies.put(json.loads(message.payload))
    parsed = urlparse(MQTT_URL)
    client.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883)
    client.loop_start()
    client.subscribe(f"{prefix}/ingest/replies/#", qos=1)
    try:
        image = base64.b64encode(part_jpeg(3)).decode()
        good = {"token": station.token, "part_serial": "MQ-IN-1", "image_base64": image, "idempotency_key": "mq-1"}
        time.sleep(0.5)
        client.publish(f"{prefix}/ingest", json.dumps(good), qos=1)
        accepted = replies.get(timeout=10)
        client.publish(f"{prefix}/ingest", json.dumps({**good, "token": "lps_bad_bad"}), qos=1)
        refused = replies.get(timeout=10)
        client.publish(
            f"{prefix}/ingest",
            json.dumps({**good, "idempotency_key": "mq-2", "image_base64": base64.b64encode(b"<svg/>").decode()}),
            qos=1,
        )
        bad_image = replies.get(timeout=10)
    finally:
        client.loop_stop()
        client.disconnect()
        bridge.stop()

    assert accepted["status"] == 202 and Inspection.objects.get(pk=accepted["inspection"]).part.serial == "MQ-IN-1"
    assert refused["status"] == 401
    assert bad_image == {"status": 400, "code": "unsupported_format", "detail": bad_image["detail"]}
    assert Inspection.objects.count() == 1


@dataclass
class IngestLine:
    """A running ingest bridge and a station client listening on every reply topic."""

    station: StationWithToken
    topic: str
    client: mqtt.Client
    replies: queue.Queue[tuple[str, dict[str, Any]]]

    def message(self, serial: str, **overrides: Any) -> dict[str, Any]:
        image = base64.b64encode(part_jpeg(3)).decode()
        return {"token": self.station.token, "part_serial": serial, "image_base64": image, **overrides}

    def send(self, payload: bytes) -> tuple[str, dict[str, Any]]:
        """Publish to the ingest topic; the reply's last topic level (station id) and body."""
        self.client.publish(self.topic, payload, qos=1)
        topic, body = self.replies.get(timeout=10)
        return topic.rsplit("/", 1)[-1], body


@pytest.fixture
def ingest_line(transactional_db: None) -> Iterator[IngestLine]:
    from inspection.management.commands.mqtt_ingest import MqttIngestBridge

    prefix = f"loupe-test-{uuid.uuid4().hex[:6]}"
    bridge = MqttIngestBridge(MQTT_URL, prefix)
    bridge.start()
    assert bridge.subscribed.wait(5)
    replies: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"station-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda _c, _u, message: replies.put((message.topic, json.loads(message.payload)))
    client.on_subscribe = lambda *args: subscribed.set()
    parsed = urlparse(MQTT_URL)
    client.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883)
    client.loop_start()
    client.subscribe(f"{prefix}/ingest/replies/#", qos=1)
    assert subscribed.wait(5)
    try:
        yield IngestLine(make_station(make_project()), f"{prefix}/ingest", client, replies)
    finally:
        client.loop_stop()
        client.disconnect()
        bridge.stop()


NUL_REFUSED = "JSON strings may not contain the NUL character (\\u0000)."


@pytest.mark.parametrize(
    ("overrides", "status", "code", "reason"),
    [
        ({"token": "€"}, 401, "not_authenticated", "Malformed station token."),  # UnicodeEncodeError in DRF
        ({"token": 12345}, 401, "not_authenticated", "Malformed station token."),
        ({"token": "lps_\x00_secret"}, 400, "parse_error", NUL_REFUSED),
        ({"captured_at": "2024-02-30T00:00"}, 400, "invalid", "Invalid input. captured_at: Datetime has wrong format."),
        ({"part_serial": "MQ\x00-1"}, 400, "parse_error", NUL_REFUSED),  # DataError on PostgreSQL
        ({"sku": "SKU\x00"}, 400, "parse_error", NUL_REFUSED),
        ({"lot": {"nested": ["L\x00T"]}}, 400, "parse_error", NUL_REFUSED),
        ({"part_serial": "MQ 1!"}, 400, "invalid", "Invalid input. part_serial: This value does not match"),
        ({"idempotency_key": "k" * 129}, 400, "invalid", "Invalid input. idempotency_key: Ensure this field"),
        ({"image_base64": 42}, 400, "invalid", "Invalid input. image_base64: This field is required"),
        ({"colour": "red"}, 400, "invalid", "Invalid input. colour: This field cannot be set."),
    ],
)
def test_a_bad_ingest_message_is_answered_with_a_reason_and_the_next_good_one_is_still_ingested(
    ingest_line: IngestLine, overrides: dict[str, Any], status: int, code: str, reason: str
) -> None:
    from inspection.models import Inspection

    bad = ingest_line.message("MQ-BAD", **overrides)

    _, refused = ingest_line.send(json.dumps(bad).encode())
    station_topic, accepted = ingest_line.send(json.dumps(ingest_line.message("MQ-GOOD")).encode())

    assert (refused["status"], refused["code"]) == (status, code)
    assert refused["detail"].startswith(reason), refused["detail"]
    assert station_topic == str(ingest_line.station.station.pk)
    assert accepted["status"] == 202 and accepted["part_serial"] == "MQ-GOOD"
    assert list(Inspection.objects.values_list("part__serial", flat=True)) == ["MQ-GOOD"]


def test_a_message_nested_past_the_recursion_limit_is_a_400_not_a_dead_bridge(ingest_line: IngestLine) -> None:
    _, refused = ingest_line.send(b'{"token": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    _, accepted = ingest_line.send(json.dumps(ingest_line.message("MQ-AFTER-DEEP")).encode())

    assert refused == {"status": 400, "code": "parse_error", "detail": "The JSON is nested deeper than 32 levels."}
    assert accepted["status"] == 202


def test_an_unexpected_failure_is_logged_and_answered_with_a_500_and_the_bridge_keeps_ingesting(
    ingest_line: IngestLine, monkeypatch: Any, caplog: Any
) -> None:
    from inspection.management.commands import mqtt_ingest as bridge_module
    from inspection.services.mqtt_ingest import mqtt_ingest_message

    calls = iter([RuntimeError("database went away"), None])

    def fails_once(payload: bytes) -> Any:
        failure = next(calls, None)
        if failure is not None:
            raise failure
        return mqtt_ingest_message(payload)

    monkeypatch.setattr(bridge_module, "mqtt_ingest_message", fails_once)

    failed_topic, failed = ingest_line.send(json.dumps(ingest_line.message("MQ-LOST")).encode())
    _, accepted = ingest_line.send(json.dumps(ingest_line.message("MQ-RETRIED")).encode())

    assert (failed_topic, failed["status"], failed["code"]) == ("unauthenticated", 500, "server_error")
    assert accepted["status"] == 202 and accepted["part_serial"] == "MQ-RETRIED"
    logged = [record for record in caplog.records if record.name == bridge_module.__name__]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert "database went away" in caplog.text


def test_a_failure_after_the_token_is_checked_is_answered_on_the_stations_own_topic(
    monkeypatch: Any, caplog: Any
) -> None:
    from django.db import OperationalError

    from inspection.models import Inspection
    from inspection.services import mqtt_ingest as service

    station = make_station(make_project())
    message = {
        "token": station.token,
        "part_serial": "MQ-OUTAGE",
        "image_base64": base64.b64encode(part_jpeg()).decode(),
    }

    def outage(**kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(service, "inspection_submit", outage)

    reply = service.mqtt_ingest_message(json.dumps(message).encode())

    assert reply.station_id == station.station.pk
    assert reply.body == {
        "status": 500,
        "code": "server_error",
        "detail": "The message could not be ingested; send it again.",
    }
    assert "server closed the connection" in caplog.text
    assert not Inspection.objects.exists()


def test_mqtt_refuses_the_fields_the_http_api_refuses_with_the_same_reasons() -> None:
    from inspection.services.mqtt_ingest import mqtt_ingest_message

    station = make_station(make_project())
    bad_fields = {"part_serial": "MQ 1!", "sku": "S" * 129, "captured_at": "2024-02-30T00:00", "station": "x"}

    over_http: Any = APIClient().post(
        "/api/v1/inspections", {**bad_fields, "image": upload(part_jpeg())}, format="multipart", headers=station.auth
    )
    over_mqtt = mqtt_ingest_message(
        json.dumps(
            {**bad_fields, "token": station.token, "image_base64": base64.b64encode(part_jpeg()).decode()}
        ).encode()
    )

    assert over_http.status_code == over_mqtt.body["status"] == 400
    assert over_mqtt.body["code"] == over_http.json()["code"] == "invalid"
    assert over_mqtt.body["errors"] == over_http.json()["errors"]
    assert set(over_mqtt.body["errors"]) == {"part_serial", "sku", "captured_at", "station"}


class RecordingSocket:
    """The client's socket, recording the options set on it (everything else passes through)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.options: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options.append((level, option, value))
        self._sock.setsockopt(level, option, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux-only")
def test_the_worker_acknowledges_the_brokers_pubacks_at_once_so_a_batch_never_waits_out_a_delayed_ack() -> None:
    # Mosquitto sends each PUBACK of a batch as its own small segment and (Nagle) holds the next
    # one until the last is acknowledged: with Linux's delayed ACK that is up to 40 ms a batch.
    from inspection import mqtt as loupe_mqtt

    client = loupe_mqtt._client(MQTT_URL)
    assert isinstance(client._sock, socket.socket)
    recording = RecordingSocket(client._sock)
    client._sock = recording
    try:
        unacknowledged = loupe_mqtt.publish_many(MQTT_URL, [(f"loupe-test/quickack/{n}", b"{}") for n in range(8)])
    finally:
        client._sock = recording._sock

    assert isinstance(client, loupe_mqtt.QuickAckClient)
    assert unacknowledged == []
    assert (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1) in recording.options
