"""Signed webhooks for final verdicts; URLs that reach inside the network are refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from inspection.errors import InvalidInput
from inspection.models import Verdict, Webhook, WebhookDelivery
from inspection.services import inspection_run
from inspection.services.webhooks import (
    MAX_ATTEMPTS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookRetry,
    backoff_seconds,
    resolve_public,
    webhook_create,
    webhook_deliver,
    webhook_deliveries_requeue_overdue,
)
from inspection.tasks import webhook_deliver_task
from review.models import ReviewItem
from review.services import review_decide
from tests.factories import make_project, make_station, make_user, part_jpeg, upload

pytestmark = pytest.mark.django_db


@dataclass
class Receiver:
    url: str
    responses: list[tuple[int, dict[str, str]]]
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    """A plant's HTTP endpoint on this machine (allow-listed as an internal host)."""
    state = Receiver(url="", responses=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(({k: v for k, v in self.headers.items()}, body))
            code, headers = state.responses.pop(0) if state.responses else (200, {})
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "14")
            self.end_headers()
            self.wfile.write(b"secret-content")

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/loupe-hook"
    settings.LOUPE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    yield state
    server.shutdown()


def decided_verdict(project: Any) -> Verdict:
    station = make_station(project)
    posted: Any = APIClient().post(
        "/api/v1/inspections", {"part_serial": "WH-1", "image": upload(part_jpeg())}, format="multipart",
        headers=station.auth,
    )  # fmt: skip
    inspection_run(inspection_id=posted.json()["id"])
    verdict = review_decide(
        item=ReviewItem.objects.get(part__serial="WH-1"), reviewer=make_user(project), outcome="pass"
    )
    assert verdict is not None
    return verdict


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.5/hook",
        "http://100.64.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://2130706433/hook",  # 127.0.0.1 spelled as a number
        "http://localhost/hook",  # a name that resolves to loopback
        "ftp://example.com/hook",
        "file:///etc/passwd",
    ],
)
def test_webhook_urls_that_reach_inside_the_network_are_refused(url: str) -> None:
    project = make_project()
    client = APIClient()
    client.force_authenticate(make_user(project, role="admin"))

    response: Any = client.post("/api/v1/webhooks", {"project": project.pk, "url": url}, format="json")

    assert response.status_code == 400
    assert not Webhook.objects.exists()


def test_a_name_resolving_to_a_private_address_is_refused_even_if_it_looks_public(monkeypatch: Any) -> None:
    import socket

    # What a DNS-rebinding host answers: a public-looking name, a private address.
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET, 1, 6, "", ("10.0.0.7", 80))])

    with pytest.raises(InvalidInput, match="private"):
        resolve_public("https://mes.example.com/hook")


def test_a_final_verdict_is_delivered_signed_and_logged(receiver: Receiver) -> None:
    project = make_project()
    webhook, secret = webhook_create(project=project, url=receiver.url)

    verdict = decided_verdict(project)
    delivery = WebhookDelivery.objects.get(webhook=webhook, verdict=verdict)
    webhook_deliver(delivery_id=delivery.pk)

    ((headers, body),) = receiver.requests
    expected = hmac.new(secret.encode(), headers[TIMESTAMP_HEADER].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], f"sha256={expected}")
    assert b'"part_serial": "WH-1"' in body and b'"verdict": "pass"' in body
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 1, 200)


def test_a_failing_receiver_is_retried_with_growing_backoff_then_delivered(receiver: Receiver) -> None:
    project = make_project()
    webhook, _ = webhook_create(project=project, url=receiver.url)
    receiver.responses = [(503, {}), (500, {})]
    delivery = WebhookDelivery.objects.get(webhook=webhook, verdict=decided_verdict(project))

    with pytest.raises(WebhookRetry) as first:
        webhook_deliver(delivery_id=delivery.pk)
    with pytest.raises(WebhookRetry) as second:
        webhook_deliver(delivery_id=delivery.pk)
    webhook_deliver(delivery_id=delivery.pk)

    assert first.value.countdown < second.value.countdown == backoff_seconds(2)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    assert "secret-content" not in delivery.error  # the receiver's body is never stored


def test_a_redirect_inward_is_not_followed(receiver: Receiver) -> None:
    project = make_project()
    webhook, _ = webhook_create(project=project, url=receiver.url)
    receiver.responses = [(302, {"Location": "http://169.254.169.254/latest/meta-data/"})]
    delivery = WebhookDelivery.objects.get(webhook=webhook, verdict=decided_verdict(project))

    with pytest.raises(WebhookRetry):
        webhook_deliver(delivery_id=delivery.pk)

    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert delivery.response_code == 302 and delivery.error == "receiver answered HTTP 302"


def test_the_delivery_log_is_for_the_projects_admins_only(receiver: Receiver) -> None:
    project, other = make_project(), make_project()
    webhook, _ = webhook_create(project=project, url=receiver.url)
    delivery = WebhookDelivery.objects.get(webhook=webhook, verdict=decided_verdict(project))
    admin, stranger, reviewer = (make_user(project, role="admin"), make_user(other, role="admin"),
                                 make_user(project, role="reviewer"))  # fmt: skip

    def get(user: Any, url: str) -> Any:
        client = APIClient()
        client.force_authenticate(user)
        return client.get(url)

    assert [row["id"] for row in get(admin, "/api/v1/webhook-deliveries").json()["results"]] == [delivery.pk]
    assert get(stranger, f"/api/v1/webhook-deliveries/{delivery.pk}").status_code == 404
    assert get(reviewer, f"/api/v1/webhook-deliveries/{delivery.pk}").status_code == 404
    assert get(stranger, "/api/v1/webhooks").json()["results"] == []


def test_a_verdict_queues_one_delivery_per_active_webhook_of_its_own_project_only(receiver: Receiver) -> None:
    from inspection.services.webhooks import webhook_deliveries_queue

    project, other = make_project(), make_project()
    active, _ = webhook_create(project=project, url=receiver.url)
    paused, _ = webhook_create(project=project, url=receiver.url)
    Webhook.objects.filter(pk=paused.pk).update(is_active=False)
    webhook_create(project=other, url=receiver.url)

    verdict = decided_verdict(project)
    again = webhook_deliveries_queue(verdict=verdict)

    deliveries = WebhookDelivery.objects.filter(verdict=verdict)
    assert list(deliveries.values_list("webhook_id", "status", "attempts")) == [(active.pk, "pending", 0)]
    assert again == []  # queueing twice creates nothing new


@pytest.mark.parametrize("inward", ["127.0.0.1", "10.0.0.1"])
def test_a_host_that_rebinds_to_a_private_address_after_it_was_saved_is_never_posted_to(
    receiver: Receiver, monkeypatch: Any, inward: str
) -> None:
    port = receiver.url.rsplit(":", 1)[1].split("/", 1)[0]
    url = f"http://mes.example.com:{port}/loupe-hook"  # the receiver's port, behind a public-looking name
    real_getaddrinfo = socket.getaddrinfo
    answer = {"mes.example.com": "93.184.216.34"}  # public while the webhook is saved
    lookups: list[str] = []

    def resolver(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answer and host != inward:
            return real_getaddrinfo(host, port, *args, **kwargs)
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer.get(host, host), port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    project = make_project()
    webhook, _ = webhook_create(project=project, url=url)
    delivery = WebhookDelivery.objects.get(webhook=webhook, verdict=decided_verdict(project))

    answer["mes.example.com"] = inward  # the name's owner points it inward for the delivery
    lookups.clear()
    for _ in range(MAX_ATTEMPTS - 1):
        with pytest.raises(WebhookRetry):
            webhook_deliver(delivery_id=delivery.pk)
    webhook_deliver(delivery_id=delivery.pk)

    assert receiver.requests == []
    # One check per attempt and no connection: urllib3 resolves even an address literal before
    # it connects, so a request to the inward address would show here.
    assert lookups == ["mes.example.com"] * MAX_ATTEMPTS
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", MAX_ATTEMPTS, None)
    assert delivery.error == (
        "Webhook host 'mes.example.com' resolves to a loopback, private, link-local or reserved address."
    )


# --- the reconciler: deliveries whose broker message was lost --------------------------------


@pytest.fixture
def broker(monkeypatch: Any) -> list[int]:
    """The delivery ids the reconciler queues, in order (a stand-in for the Redis queue, so a
    test never leaves messages for a later test's worker)."""
    queued: list[int] = []
    monkeypatch.setattr("inspection.services.webhooks._enqueue", queued.append)
    return queued


def work_off(queued: list[int]) -> None:
    """A worker taking every queued message, in order, through the real task."""
    while queued:
        webhook_deliver_task.apply(args=(queued.pop(0),), throw=True)


def lost_delivery(receiver: Receiver, **state: Any) -> WebhookDelivery:
    """A delivery of a final verdict whose message never reached a worker, in ``state``."""
    project = make_project()
    webhook, _ = webhook_create(project=project, url=receiver.url)
    delivery = WebhookDelivery.objects.get(webhook=webhook, verdict=decided_verdict(project))
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**state)
    delivery.refresh_from_db()
    return delivery


def test_a_delivery_whose_message_was_lost_is_queued_again_and_delivered_once(
    receiver: Receiver, broker: list[int]
) -> None:
    delivery = lost_delivery(receiver, created_at=timezone.now() - timedelta(minutes=10))

    assert webhook_deliveries_requeue_overdue() == [delivery.pk]
    assert webhook_deliveries_requeue_overdue() == [delivery.pk]  # a second run before a worker got to it
    work_off(broker)

    assert len(receiver.requests) == 1
    assert receiver.requests[0][0]["X-Loupe-Delivery"] == str(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 1, 200)
    assert webhook_deliveries_requeue_overdue() == []  # delivered: nothing to do any more
    assert broker == []


def test_a_retry_whose_message_was_lost_is_queued_again(receiver: Receiver, broker: list[int]) -> None:
    delivery = lost_delivery(
        receiver, attempts=2, error="receiver answered HTTP 503", last_attempt_at=timezone.now() - timedelta(minutes=10)
    )

    assert webhook_deliveries_requeue_overdue() == [delivery.pk]
    work_off(broker)

    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error) == ("delivered", 3, "")


def minutes_ago(minutes: float) -> Any:
    return timezone.now() - timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ({"created_at_minutes": 1}, "just created: its message is on its way"),
        ({"attempts": 1, "error": "receiver answered HTTP 503", "last_attempt_minutes": 2}, "retry not yet overdue"),
        ({"attempts": 5, "error": "receiver answered HTTP 503", "last_attempt_minutes": 6}, "backoff 160 s + grace"),
        ({"attempts": 1, "error": "", "last_attempt_minutes": 1}, "an attempt is sending it right now"),
        ({"status": "delivered", "attempts": 1}, "delivered"),
        ({"status": "failed", "attempts": MAX_ATTEMPTS, "error": "receiver answered HTTP 500"}, "failed"),
    ],
)
def test_a_delivery_that_is_not_overdue_is_left_alone(
    receiver: Receiver, broker: list[int], state: dict[str, Any], why: str
) -> None:
    state = {"created_at_minutes": 60, "last_attempt_minutes": None, **state}
    created, last = state.pop("created_at_minutes"), state.pop("last_attempt_minutes")
    lost_delivery(
        receiver, created_at=minutes_ago(created), last_attempt_at=None if last is None else minutes_ago(last), **state
    )

    assert webhook_deliveries_requeue_overdue() == [], why
    assert broker == [] and receiver.requests == []


def test_a_second_attempt_while_one_is_sending_sends_nothing_until_its_lease_runs_out(receiver: Receiver) -> None:
    delivery = lost_delivery(receiver, attempts=1, error="", last_attempt_at=minutes_ago(0.5))

    webhook_deliver(delivery_id=delivery.pk)

    assert receiver.requests == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 1)

    WebhookDelivery.objects.filter(pk=delivery.pk).update(last_attempt_at=minutes_ago(3))  # its worker died
    webhook_deliver(delivery_id=delivery.pk)

    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)


def test_an_interrupted_last_attempt_is_queued_again_and_marked_failed(receiver: Receiver, broker: list[int]) -> None:
    delivery = lost_delivery(receiver, attempts=MAX_ATTEMPTS, error="", last_attempt_at=minutes_ago(10))

    assert webhook_deliveries_requeue_overdue() == [delivery.pk]
    work_off(broker)

    assert receiver.requests == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error) == (
        "failed",
        MAX_ATTEMPTS,
        "the last attempt was interrupted",
    )


def test_the_reconciler_runs_every_minute_as_a_registered_task(settings: Any) -> None:
    from loupe.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["requeue-overdue-webhook-deliveries"]

    assert entry["schedule"] == 60.0 and entry["task"] in app.tasks


# --- through the real worker process ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_decided_part_reaches_the_webhook_through_the_worker_and_a_lost_message_is_recovered(
    live: Any, receiver: Receiver, monkeypatch: Any
) -> None:
    from tests.conftest import wait_until
    from tests.review.test_live_loop import post_part

    project = make_project()
    station = make_station(project)
    reviewer = make_user(project, role="reviewer")
    webhook, secret = webhook_create(project=project, url=receiver.url)

    def decide(serial: str) -> Verdict:
        posted = post_part(live, station, serial)
        wait_until(lambda: ReviewItem.objects.filter(inspection_id=posted["id"]).exists(), timeout_s=60, what="routed")
        item = ReviewItem.objects.get(inspection_id=posted["id"])
        verdict = review_decide(item=item, reviewer=reviewer, outcome="pass", defect_class_id=None, comment="")
        assert verdict is not None
        return verdict

    delivered = decide("WH-LIVE-1")  # its delivery is queued on commit and the worker sends it
    wait_until(lambda: len(receiver.requests) == 1, timeout_s=30, what="first delivery")

    monkeypatch.setattr("inspection.services.webhooks._enqueue", lambda delivery_id: None)  # lost on its way
    lost = decide("WH-LIVE-2")
    monkeypatch.undo()
    delivery = WebhookDelivery.objects.get(webhook=webhook, verdict=lost)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=minutes_ago(10))
    assert len(receiver.requests) == 1 and delivery.status == "pending"

    assert webhook_deliveries_requeue_overdue() == [delivery.pk]
    wait_until(lambda: len(receiver.requests) == 2, timeout_s=30, what="recovered delivery")

    bodies = [json.loads(body) for _, body in receiver.requests]
    assert [body["verdict_id"] for body in bodies] == [delivered.pk, lost.pk]
    for headers, body in receiver.requests:  # signed with the webhook's secret by the worker
        expected = hmac.new(secret.encode(), headers[TIMESTAMP_HEADER].encode() + b"." + body, hashlib.sha256)
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], f"sha256={expected.hexdigest()}")
    statuses = set(WebhookDelivery.objects.filter(webhook=webhook).values_list("status", flat=True))
    assert statuses == {"delivered"}
