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
