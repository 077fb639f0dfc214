"""Final verdicts for PLCs and SCADA over OPC UA: a read-only OPC UA server (asyncua) with one
object per station holding its latest final verdict.

Address space (namespace ``urn:loupe``; node ids are strings a PLC programmer can type):

    Objects/Loupe                                   ns=<i>;s=loupe  (an object per active station)
      Station<id>  ("<line> / <station>")          ns=<i>;s=station/<id>
        LastVerdictId     Int64     changes with every new verdict: the trigger to read the rest
        LastVerdict       String    "pass" or "fail"
        LastPartSerial    String
        LastSku           String
        LastDefectClass   String    "" when passed
        LastSource        String    "model" or "human"
        LastModelVersion  String
        LastDecidedAt     DateTime  UTC
        LineName, StationName  String

The server follows the final verdicts in the database (``selectors.final_verdicts_after``), so
it needs no broker and runs the same on the embedded default and in production. Verdicts can
commit out of id order (concurrent transactions), so it re-reads a short window behind the
newest id it has seen and skips the ones it has applied. Transport only: nothing is decided or
written here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from asyncua import Node, Server, ua
from django.db import close_old_connections
from django.utils import timezone

from inspection.services.line_integration import verdict_message

logger = logging.getLogger(__name__)

NAMESPACE = "urn:loupe"
NEVER = datetime(1601, 1, 1)  # OPC UA's minimum DateTime: no verdict yet
# A verdict committed this long after a higher id was read is still picked up.
LOOKBACK = timedelta(seconds=30)
STATIONS_EVERY_S = 10.0  # how often stations added since are given their objects

FIELDS: dict[str, tuple[str, ua.VariantType, Any]] = {
    # node name: (message key, OPC UA type, initial value)
    "LastVerdictId": ("verdict_id", ua.VariantType.Int64, 0),
    "LastVerdict": ("verdict", ua.VariantType.String, ""),
    "LastPartSerial": ("part_serial", ua.VariantType.String, ""),
    "LastSku": ("sku", ua.VariantType.String, ""),
    "LastDefectClass": ("defect_class", ua.VariantType.String, ""),
    "LastSource": ("source", ua.VariantType.String, ""),
    "LastModelVersion": ("model_version", ua.VariantType.String, ""),
    "LastDecidedAt": ("decided_at", ua.VariantType.DateTime, NEVER),
}


class VerdictServer:
    """The OPC UA server and its station objects."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.server = Server()
        self.namespace = 0
        self.root: Node | None = None
        self.stations: dict[int, dict[str, Node]] = {}

    async def start(self) -> None:
        await self.server.init()
        self.server.set_endpoint(self.endpoint)
        self.server.set_server_name("Loupe final verdicts")
        self.server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.namespace = await self.server.register_namespace(NAMESPACE)
        self.root = await self.server.nodes.objects.add_object(
            ua.NodeId("loupe", self.namespace), ua.QualifiedName("Loupe", self.namespace)
        )
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    async def station(self, station_id: int, line: str, name: str) -> dict[str, Node]:
        """The station's variables, created on first use."""
        if station_id in self.stations:
            return self.stations[station_id]
        assert self.root is not None
        ns = self.namespace
        obj = await self.root.add_object(
            ua.NodeId(f"station/{station_id}", ns), ua.QualifiedName(f"Station{station_id}", ns)
        )
        await obj.write_attribute(ua.AttributeIds.DisplayName, ua.DataValue(ua.LocalizedText(f"{line} / {name}")))
        nodes: dict[str, Node] = {}
        for field, (_, kind, initial) in FIELDS.items():
            nodes[field] = await obj.add_variable(
                ua.NodeId(f"station/{station_id}/{field}", ns), ua.QualifiedName(field, ns), initial, varianttype=kind
            )
        for field, text in (("LineName", line), ("StationName", name)):
            nodes[field] = await obj.add_property(
                ua.NodeId(f"station/{station_id}/{field}", ns), ua.QualifiedName(field, ns), text
            )
        self.stations[station_id] = nodes
        return nodes

    async def apply(self, message: dict[str, Any], line: str, name: str) -> None:
        """Write one final verdict (``line_integration.verdict_message``) to its station's
        variables; LastVerdictId last, so a client triggered by it reads a complete verdict."""
        nodes = await self.station(int(message["station"]), line, name)
        for field, (key, kind, _) in FIELDS.items():
            if field == "LastVerdictId":
                continue
            value = message.get(key)
            if kind == ua.VariantType.DateTime:
                value = datetime.fromisoformat(value).astimezone(UTC).replace(tzinfo=None) if value else NEVER
            elif value is None:
                value = ""
            await nodes[field].write_value(ua.DataValue(ua.Variant(value, kind)))
        await nodes["LastVerdictId"].write_value(
            ua.DataValue(ua.Variant(int(message["verdict_id"]), ua.VariantType.Int64))
        )


class VerdictFeed:
    """The final verdicts committed since the last read, each once. Ids are read for a window
    behind the newest (``LOOKBACK``): a verdict whose transaction committed after a higher id
    was read is found there; the window's start moves up past verdicts older than that."""

    def __init__(self, after_id: int) -> None:
        self.low_water = after_id
        self.applied: set[int] = set()

    def read(self, limit: int = 500) -> list[tuple[dict[str, Any], str, str]]:
        from inspection.selectors import final_verdict_ids_after, final_verdicts_by_ids

        close_old_connections()
        horizon = timezone.now() - LOOKBACK
        rows = final_verdict_ids_after(after_id=self.low_water)
        pending = [pk for pk, _ in rows if pk not in self.applied]
        taken, left = pending[:limit], set(pending[limit:])
        fresh = []
        for verdict in final_verdicts_by_ids(taken):
            self.applied.add(verdict.pk)
            if verdict.inspection is not None:
                station = verdict.inspection.station
                fresh.append((verdict_message(verdict), station.line.name, station.name))
        self.applied.update(taken)  # ids gone since (superseded) are not read again either
        for pk, created_at in rows:  # in id order
            if created_at >= horizon or pk in left:
                break
            self.low_water = pk
        self.applied = {pk for pk in self.applied if pk > self.low_water}
        return fresh


async def serve(endpoint: str, *, poll_seconds: float, stop: asyncio.Event, ready: Any = None) -> None:
    """Run the server until ``stop`` is set: the latest verdict of every station first, then each
    new final verdict as it commits (polled every ``poll_seconds``)."""
    from inspection.selectors import latest_final_verdicts_by_station

    loop = asyncio.get_running_loop()
    server = VerdictServer(endpoint)
    await server.start()
    try:
        latest = await sync_to_async(_latest_messages, thread_sensitive=True)(latest_final_verdicts_by_station)
        for message, line, name in latest:
            await server.apply(message, line, name)
        await _add_stations(server)
        start_after = max((message["verdict_id"] for message, _, _ in latest), default=0)
        newest = await sync_to_async(_newest_id, thread_sensitive=True)()
        feed = VerdictFeed(after_id=max(start_after, newest))
        if ready is not None:
            ready()
        stations_read_at = loop.time()
        while not stop.is_set():
            if loop.time() - stations_read_at > STATIONS_EVERY_S:  # stations added since
                await _add_stations(server)
                stations_read_at = loop.time()
            batch = await sync_to_async(feed.read, thread_sensitive=True)()
            for message, line, name in batch:
                await server.apply(message, line, name)
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=poll_seconds)
    finally:
        await server.stop()


async def _add_stations(server: VerdictServer) -> None:
    """An object for every active station, so a PLC finds its nodes before the first verdict."""
    for station_id, line, name in await sync_to_async(_active_stations, thread_sensitive=True)():
        await server.station(station_id, line, name)


def _active_stations() -> list[tuple[int, str, str]]:
    from inspection.models import Station

    close_old_connections()
    rows = Station.objects.filter(is_active=True).select_related("line").order_by("id")
    return [(station.pk, station.line.name, station.name) for station in rows]


def _latest_messages(select: Any) -> list[tuple[dict[str, Any], str, str]]:
    close_old_connections()
    out = []
    for verdict in select():
        station = verdict.inspection.station
        out.append((verdict_message(verdict), station.line.name, station.name))
    return out


def _newest_id() -> int:
    """The newest final verdict's id now, settled or not (history is not replayed)."""
    from inspection.models import Verdict

    close_old_connections()
    newest = Verdict.objects.filter(is_final=True).order_by("-id").values_list("id", flat=True).first()
    return int(newest or 0)


def node_ids(namespace: int, station_ids: Iterable[int]) -> list[str]:
    """The variables' node ids as a PLC is configured with them."""
    return [f"ns={namespace};s=station/{sid}/{field}" for sid in station_ids for field in FIELDS]
