"""Final verdicts over OPC UA: a real ``manage.py opcua_server`` process serves each station's
latest final verdict, and a real OPC UA client (asyncua) reads it, is notified of new ones
through a subscription, and cannot write."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from asyncua import Client, ua
from django.utils import timezone

from inspection.models import Image, Inspection, Part, Project, Station, Verdict
from inspection.opcua import VerdictFeed
from inspection.services import station_create
from inspection.services.verdicts import verdict_record_final
from tests.conftest import ServiceProcess, _database_url, _spawn, _wait_for
from tests.factories import make_project

NAMESPACE = "urn:loupe"


def record(project: Project, station: Station, serial: str, outcome: str, defect: str | None = None) -> Verdict:
    """A part the models decided at ``station``: its final verdict."""
    image, _ = Image.objects.get_or_create(
        sha256="1" * 64, defaults={"file": "opcua.png", "format": "PNG", "width": 8, "height": 8, "bytes": 64}
    )
    part = Part.objects.create(project=project, serial=serial, sku="PLATE-A")
    inspection = Inspection.objects.create(
        project=project,
        part=part,
        station=station,
        image=image,
        captured_at=timezone.now(),
        status=Inspection.Status.DONE,
    )
    verdict_record_final(
        part=part,
        outcome=outcome,
        source=Verdict.Source.MODEL,
        defect_class=project.defect_classes.get(name=defect) if defect else None,
        inspection=inspection,
        model_version="classifier:1",
    )
    return part.verdicts.get(is_final=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def opcua_server(transactional_db: None) -> Iterator[tuple[str, Any]]:
    """Start the server after the test has written what it should find at startup."""
    started: list[ServiceProcess] = []
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/loupe/"

    def start() -> ServiceProcess:
        env = {**os.environ, "DATABASE_URL": _database_url(), "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "manage.py", "opcua_server", "--endpoint", endpoint, "--poll", "0.05"]
        service = _spawn("opcua", argv, env)
        started.append(service)
        _wait_for(lambda: "serving final verdicts" in service.log(), service, timeout_s=60)
        return service

    yield endpoint, start
    for service in started:
        service.stop()


async def read_station(endpoint: str, station_id: int) -> dict[str, Any]:
    async with Client(endpoint) as client:
        ns = await client.get_namespace_index(NAMESPACE)
        node = client.get_node(f"ns={ns};s=station/{station_id}")
        values = {"DisplayName": (await node.read_display_name()).Text}
        for field in ("LastVerdictId", "LastVerdict", "LastPartSerial", "LastSku", "LastDefectClass", "LastSource",
                      "LastModelVersion", "LastDecidedAt", "LineName", "StationName"):  # fmt: skip
            values[field] = await client.get_node(f"ns={ns};s=station/{station_id}/{field}").read_value()
        return values


async def wait_for_value(endpoint: str, node_id: str, expected: Any, timeout_s: float = 15) -> None:
    async with Client(endpoint) as client:
        ns = await client.get_namespace_index(NAMESPACE)
        node = client.get_node(f"ns={ns};s={node_id}")
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (value := await node.read_value()) != expected:
            assert asyncio.get_running_loop().time() < deadline, f"{node_id} is {value!r}, wanted {expected!r}"
            await asyncio.sleep(0.05)


def test_a_plc_reads_each_stations_latest_verdict_and_new_ones_as_they_are_decided(
    opcua_server: tuple[str, Any],
) -> None:
    endpoint, start = opcua_server
    project = make_project()
    top = station_create(project=project, line_name="Line 1", station_name="Top cam")
    side = station_create(project=project, line_name="Line 1", station_name="Side cam")
    record(project, top, "OLD-1", "pass")
    latest = record(project, top, "OLD-2", "fail", "scratch")
    start()

    at_start = asyncio.run(read_station(endpoint, top.pk))
    decided = record(project, side, "NEW-1", "fail", "crack")
    asyncio.run(wait_for_value(endpoint, f"station/{side.pk}/LastVerdictId", decided.pk))
    new_station = asyncio.run(read_station(endpoint, side.pk))

    # What the station last decided before the server started is there at once.
    assert at_start["LastVerdictId"] == latest.pk
    assert (at_start["LastVerdict"], at_start["LastPartSerial"], at_start["LastDefectClass"]) == (
        "fail",
        "OLD-2",
        "scratch",
    )
    assert at_start["DisplayName"] == "Line 1 / Top cam"
    assert (at_start["LineName"], at_start["StationName"]) == ("Line 1", "Top cam")
    # A station's first verdict creates its object; every field is the verdict's.
    assert new_station["LastVerdict"] == "fail" and new_station["LastPartSerial"] == "NEW-1"
    assert new_station["LastDefectClass"] == "crack" and new_station["LastSku"] == "PLATE-A"
    assert new_station["LastSource"] == "model" and new_station["LastModelVersion"] == "classifier:1"
    assert (
        abs(
            (
                new_station["LastDecidedAt"].replace(tzinfo=None) - decided.created_at.replace(tzinfo=None)
            ).total_seconds()
        )
        < 1
    )


def test_a_subscribed_client_is_notified_of_each_new_verdict_and_cannot_write(opcua_server: tuple[str, Any]) -> None:
    endpoint, start = opcua_server
    project = make_project()
    top = station_create(project=project, line_name="Line 1", station_name="Top cam")
    record(project, top, "FIRST", "pass")
    start()

    async def scenario() -> tuple[list[int], ua.StatusCode | None]:
        seen: list[int] = []

        class Handler:
            def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
                seen.append(int(value))

        async with Client(endpoint) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            trigger = client.get_node(f"ns={ns};s=station/{top.pk}/LastVerdictId")
            subscription = await client.create_subscription(50, Handler())
            await subscription.subscribe_data_change(trigger)
            for serial in ("S-1", "S-2"):
                await asyncio.to_thread(record, project, top, serial, "pass")
                deadline = asyncio.get_running_loop().time() + 15
                while len(seen) < 1 + ("S-1", "S-2").index(serial) + 1:
                    assert asyncio.get_running_loop().time() < deadline, seen
                    await asyncio.sleep(0.05)
            refused = None
            try:
                await client.get_node(f"ns={ns};s=station/{top.pk}/LastVerdict").write_value("pass")
            except ua.UaStatusCodeError as error:
                refused = ua.StatusCode(error.code)
            return seen, refused

    seen, refused = asyncio.run(scenario())

    ids = list(
        Verdict.objects.filter(part__serial__in=["FIRST", "S-1", "S-2"]).order_by("id").values_list("id", flat=True)
    )
    assert seen == ids  # the current value on subscribing, then each new verdict once, in order
    assert refused is not None and not refused.is_good()


def test_the_feed_picks_up_a_verdict_that_committed_after_a_higher_one_was_read(transactional_db: None) -> None:
    project = make_project()
    top = station_create(project=project, line_name="Line 1", station_name="Top cam")
    feed = VerdictFeed(after_id=0)
    slow = record(project, top, "SLOW", "pass")
    Verdict.objects.filter(pk=slow.pk).update(is_final=False)  # not visible yet: its commit is late
    fast = record(project, top, "FAST", "fail", "pit")

    first = feed.read()
    Verdict.objects.filter(pk=slow.pk).update(is_final=True)  # now committed
    second = feed.read()
    third = feed.read()

    assert [message["verdict_id"] for message, _, _ in first] == [fast.pk]
    assert [message["verdict_id"] for message, _, _ in second] == [slow.pk]
    assert third == []
    assert slow.pk < fast.pk
