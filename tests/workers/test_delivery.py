"""Delivery guarantees of the inference queue, against a real worker process and broker."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from inspection.models import Image, Inspection, Part
from inspection.tasks import inspection_run_task
from loupe.celery import app
from review.models import ReviewItem
from tests.conftest import LiveStack, pool_children, wait_until
from tests.factories import make_project, make_station

pytestmark = pytest.mark.django_db(transaction=True)


def pending_inspection(serial: str) -> Inspection:
    """An inspection row with nothing queued for it yet."""
    station = make_station(make_project()).station
    image = Image.objects.create(
        sha256=serial.ljust(64, "0"), file="images/none.png", format="PNG", width=8, height=8, bytes=1
    )
    part = Part.objects.create(project_id=station.project_id, serial=serial)
    return Inspection.objects.create(
        project_id=station.project_id, part=part, station=station, image=image, captured_at=timezone.now()
    )


@contextmanager
def row_locked(inspection_id: int) -> Iterator[None]:
    """Hold a lock that makes the worker's transaction on this inspection wait."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        lite = sqlite3.connect(db["NAME"], isolation_level=None)
        lite.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lite.execute("ROLLBACK")
            lite.close()
    else:
        import psycopg

        with psycopg.connect(
            host=db["HOST"] or "127.0.0.1",
            port=db["PORT"] or 5432,
            user=db["USER"],
            password=db["PASSWORD"] or None,
            dbname=db["NAME"],
        ) as blocker:
            blocker.execute("SELECT 1 FROM inspection_inspection WHERE id = %s FOR UPDATE", [inspection_id])
            yield
            blocker.rollback()


def reserved(broker: Any) -> bool:
    """The message left the queue and sits in kombu's unacked hash: a worker holds it."""
    return bool(broker.hlen("unacked") >= 1 and broker.llen("inference") == 0)


def test_a_task_whose_worker_process_is_killed_is_redelivered_and_writes_one_result(live: LiveStack) -> None:
    inspection = pending_inspection("KILL-9")
    broker = redis.Redis.from_url(settings.REDIS_BROKER_URL)

    with row_locked(inspection.pk):
        inspection_run_task.delay(inspection.pk)
        # The message is reserved (unacked) by the worker, whose pool process now waits on the lock.
        wait_until(lambda: reserved(broker), what="task reserved")
        time.sleep(1.0)
        children = pool_children(live.worker.process.pid)
        assert children, "the prefork worker has a pool process"
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: "signal 9" in live.worker.log() or "WorkerLostError" in live.worker.log(),
            what="worker loss noticed",
        )

    wait_until(lambda: Inspection.objects.get(pk=inspection.pk).status == "done", timeout_s=60, what="redelivered run")
    inspection.refresh_from_db()
    assert inspection.attempts == 1  # the killed attempt rolled back; the redelivery wrote once
    assert ReviewItem.objects.filter(part=inspection.part).count() == 1


def test_a_pickle_message_is_refused_by_the_worker(live: LiveStack) -> None:
    pickled, trusted = pending_inspection("PICKLE"), pending_inspection("JSON")

    app.send_task("inspection.run", args=[pickled.pk], queue="inference", serializer="pickle")
    app.send_task("inspection.run", args=[trusted.pk], queue="inference", serializer="json")

    # One worker, one queue, in order: once the JSON message is done the pickle one was seen.
    wait_until(lambda: Inspection.objects.get(pk=trusted.pk).status == "done", what="json task")
    assert Inspection.objects.get(pk=pickled.pk).status == "pending"
    assert not ReviewItem.objects.filter(part=pickled.part).exists()
    assert "untrusted content of type pickle" in live.worker.log()


def test_a_finished_inspection_run_again_changes_nothing(live: LiveStack) -> None:
    inspection = pending_inspection("TWICE")

    inspection_run_task.delay(inspection.pk)
    wait_until(lambda: Inspection.objects.get(pk=inspection.pk).status == "done", what="first run")
    inspection_run_task.delay(inspection.pk)
    trailing = pending_inspection("AFTER")
    inspection_run_task.delay(trailing.pk)
    wait_until(lambda: Inspection.objects.get(pk=trailing.pk).status == "done", what="trailing run")

    inspection.refresh_from_db()
    assert inspection.attempts == 1
    assert ReviewItem.objects.filter(part=inspection.part).count() == 1


def test_a_poison_image_is_dead_lettered_after_three_deliveries_and_goes_to_a_person(
    live: LiveStack, caplog: pytest.LogCaptureFixture
) -> None:
    from inspection.models import AuditEvent
    from inspection.services import inspection_run

    inspection = pending_inspection("POISON")
    # Three deliveries started and never finished: the worker died each time.
    Inspection.objects.filter(pk=inspection.pk).update(deliveries=3, status="running")

    inspection_run(inspection_id=inspection.pk)

    inspection.refresh_from_db()
    assert inspection.status == "failed" and inspection.error.startswith("dead-lettered")
    assert inspection.attempts == 0  # no model ran a fourth time
    assert ReviewItem.objects.get(part=inspection.part).reason == "model_error"
    assert AuditEvent.objects.filter(action="inspection.dead_lettered", object_id=str(inspection.pk)).exists()
    assert any("ALERT inspection" in record.getMessage() and record.levelname == "ERROR" for record in caplog.records)


def test_a_message_lost_by_the_broker_is_queued_again_by_the_reconciler(live: LiveStack) -> None:
    from datetime import timedelta

    from inspection.services.inspections import inspections_requeue_stale

    broker = redis.Redis.from_url(settings.REDIS_BROKER_URL)
    lost, queued = pending_inspection("LOST"), pending_inspection("FLUSHED")
    with row_locked(lost.pk):
        inspection_run_task.delay(lost.pk)
        wait_until(lambda: reserved(broker), what="worker busy")
        inspection_run_task.delay(queued.pk)
        broker.flushdb()  # Redis restarted empty / FLUSHALL: the queued message is gone
    time.sleep(2)
    assert Inspection.objects.get(pk=queued.pk).status == "pending"

    Inspection.objects.filter(pk=queued.pk).update(received_at=timezone.now() - timedelta(minutes=5))
    requeued = inspections_requeue_stale()

    wait_until(lambda: Inspection.objects.get(pk=queued.pk).status == "done", timeout_s=60, what="reconciled run")
    assert requeued >= 1
    assert ReviewItem.objects.filter(part=queued.part).count() == 1


def test_no_retry_or_countdown_outlives_the_brokers_visibility_timeout() -> None:
    from inspection.services.webhooks import backoff_seconds
    from inspection.tasks import training_run_task, verdict_publish_task, webhook_deliver_task

    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    longest_countdown = max(backoff_seconds(attempt) for attempt in range(1, 20))
    longest_mqtt_backoff = min(300, 5 * 2**verdict_publish_task.max_retries)

    assert max(longest_countdown, longest_mqtt_backoff) < visibility
    assert training_run_task.time_limit < visibility  # a long job is not redelivered while it runs
    assert webhook_deliver_task.acks_late


def test_the_reconcilers_search_for_pending_parts_is_served_by_the_index_of_pending_rows() -> None:
    from django.db import transaction

    from inspection.services.inspections import inspections_stale_pending

    if connection.vendor != "postgresql":
        pytest.skip("the query plan checked is PostgreSQL's")
    pending_inspection("STALE-1")

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")  # as the planner would at millions of rows
        plan = inspections_stale_pending(cutoff=timezone.now(), limit=1000).explain()

    assert "inspection_pending_by_received" in plan
