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
        OpenReviews       Int32     parts of this station waiting for a person (refreshed every 10 s)
        DriftAlert        Boolean   an open drift alert for the deployed models
        DriftHeld         Boolean   drift_review sends its parts to people because of it

Security (``Security``): with mode "none" the server is plain and anonymous, for a control
network. "sign" and "sign-encrypt" use Basic256Sha256: the server's certificate and key are made
on first start (self-signed, a year, renewed when expired) in the certificate folder, and once
client certificates are put in its ``trusted/`` folder only those clients are accepted. Served for
one project with anonymous access off, clients sign in with a Loupe account that is a member of
that project; the server then holds that project's stations only.

The server follows the final verdicts in the database (``selectors.final_verdicts_after``), so
it needs no broker and runs the same on the embedded default and in production. Verdicts can
commit out of id order (concurrent transactions), so it re-reads a short window behind the
newest id it has seen and skips the ones it has applied. Transport only: nothing is decided or
written here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from asyncua import Node, Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography.x509.oid import ExtendedKeyUsageOID
from django.db import close_old_connections
from django.utils import timezone

from inspection.services.line_integration import verdict_message

logger = logging.getLogger(__name__)

NAMESPACE = "urn:loupe"
NEVER = datetime(1601, 1, 1)  # OPC UA's minimum DateTime: no verdict yet
# A verdict committed this long after a higher id was read is still picked up.
LOOKBACK = timedelta(seconds=30)
STATIONS_EVERY_S = 10.0  # how often stations added since get objects, and the status nodes are refreshed

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
# The station's state, refreshed with the stations: node name -> (OPC UA type, initial value).
STATUS: dict[str, tuple[ua.VariantType, Any]] = {
    "OpenReviews": (ua.VariantType.Int32, 0),
    "DriftAlert": (ua.VariantType.Boolean, False),
    "DriftHeld": (ua.VariantType.Boolean, False),
}


APPLICATION_URI = "urn:loupe:opcua:server"
POLICIES: dict[str, list[ua.SecurityPolicyType]] = {
    "none": [ua.SecurityPolicyType.NoSecurity],
    "sign": [ua.SecurityPolicyType.Basic256Sha256_Sign, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt],
    "sign-encrypt": [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt],
}
CERTIFICATE, PRIVATE_KEY, TRUSTED = "server-cert.der", "server-key.pem", "trusted"


@dataclass(frozen=True)
class Security:
    """How clients reach the server (see the module's docstring)."""

    mode: str = "none"  # a key of POLICIES
    cert_dir: Path | None = None  # the server's certificate and key, and trusted/ client certificates
    anonymous: bool = True
    project_id: int | None = None  # serve this project's stations only; its members sign in

    def problems(self) -> list[str]:
        """Why this cannot be served ([] when it can)."""
        out = []
        if self.mode not in POLICIES:
            out.append(f"security mode {self.mode!r} is not one of {', '.join(POLICIES)}")
        if self.mode != "none" and self.cert_dir is None:
            out.append("a signed or encrypted server needs a certificate folder")
        if not self.anonymous and self.mode == "none":
            out.append("signing in needs security sign or sign-encrypt: passwords would cross the network in clear")
        if not self.anonymous and self.project_id is None:
            out.append("signing in needs a project: its members are the accounts that may sign in")
        return out


async def ensure_certificate(cert_dir: Path, host: str) -> tuple[Path, Path]:
    """The server's certificate (DER) and private key (PEM) in ``cert_dir``, made when missing,
    expired or made for another host (self-signed, valid a year; the key readable by its owner only)."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    (cert_dir / TRUSTED).mkdir(exist_ok=True)
    certificate, key = cert_dir / CERTIFICATE, cert_dir / PRIVATE_KEY
    await setup_self_signed_certificate(
        key,
        certificate,
        APPLICATION_URI,
        host,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": f"Loupe OPC UA ({host})", "organizationName": "Loupe"},
    )
    os.chmod(key, 0o600)
    return certificate, key


def thumbprint(certificate: Path) -> str:
    """SHA-1 thumbprint of a DER certificate, as OPC UA clients show it when asked to trust it."""
    return hashlib.sha1(certificate.read_bytes(), usedforsecurity=False).hexdigest()


class ProjectMembers:
    """asyncua's user manager: a user name and password sign in when they are a Loupe account's,
    active, not locked out, and a member (any role) of the served project. Failed tries count
    towards the account's lockout like sign-ins through the API.

    asyncua asks synchronously, from inside the event loop that also publishes verdicts, and a
    password check costs ~0.3 s (PBKDF2). So that nobody can stall the verdict feed by trying
    passwords: after a refused sign-in, others are refused without a check for ``pause_s``; and
    a sign-in that succeeded is remembered for ``remember_s`` (a PLC reconnecting pays nothing;
    an account removed from the project can still sign in for that long)."""

    def __init__(
        self,
        project_id: int,
        *,
        pause_s: float = 1.0,
        remember_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.project_id = project_id
        self.pause_s, self.remember_s, self.clock = pause_s, remember_s, clock
        self._key = secrets.token_bytes(32)  # remembered passwords are kept as keyed hashes only
        self._remembered: dict[tuple[str, bytes], float] = {}
        self._checks_from = 0.0

    def get_user(
        self, iserver: Any, username: str | None = None, password: Any = None, certificate: Any = None
    ) -> User | None:
        if not username or password is None:
            return None
        secret = password.decode() if isinstance(password, bytes) else str(password)
        key = (username, hmac.new(self._key, secret.encode(), hashlib.sha256).digest())
        now = self.clock()
        if self._remembered.get(key, 0.0) > now:
            return User(role=UserRole.User, name=username)
        if now < self._checks_from:
            logger.warning("OPC UA sign-in for %r refused unchecked: too soon after a refused one", username)
            return None
        if not self.check(username, secret):
            self._checks_from = self.clock() + self.pause_s
            logger.warning("OPC UA sign-in refused for %r", username)
            return None
        self._remembered = {k: until for k, until in self._remembered.items() if until > now}
        self._remembered[key] = self.clock() + self.remember_s
        return User(role=UserRole.User, name=username)

    def forget(self, usernames: set[str]) -> None:
        """No remembered sign-in for these accounts any more."""
        self._remembered = {key: until for key, until in self._remembered.items() if key[0] not in usernames}

    def check(self, username: str, password: str) -> bool:
        """Whether the account may sign in (Django's ORM refuses to run in the event loop's
        thread, so in another one)."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            return bool(pool.submit(_member_signs_in, self.project_id, username, password).result(timeout=30))


def _member_signs_in(project_id: int, username: str, password: str) -> bool:
    from django.contrib.auth import authenticate

    from inspection.models import Membership

    close_old_connections()
    try:
        user = authenticate(None, username=username, password=password)
        return bool(
            user is not None and user.is_active and Membership.objects.filter(user=user, project_id=project_id).exists()
        )
    finally:
        close_old_connections()


class VerdictServer:
    """The OPC UA server and its station objects."""

    def __init__(self, endpoint: str, security: Security | None = None) -> None:
        self.endpoint = endpoint
        self.security = security or Security()
        if self.security.anonymous:
            self.server = Server()
        else:
            assert self.security.project_id is not None
            self.server = Server(user_manager=ProjectMembers(self.security.project_id))
        self.namespace = 0
        self.root: Node | None = None
        self.stations: dict[int, dict[str, Node]] = {}
        self.certificate: Path | None = None

    async def start(self) -> None:
        security = self.security
        await self.server.init()
        self.server.set_endpoint(self.endpoint)
        self.server.set_server_name("Loupe final verdicts")
        await self.server.set_application_uri(APPLICATION_URI)
        self.server.set_security_policy(POLICIES[security.mode])
        if security.mode != "none":
            assert security.cert_dir is not None
            self.certificate, key = await ensure_certificate(security.cert_dir, socket.gethostname())
            await self.server.load_certificate(str(self.certificate))
            await self.server.load_private_key(str(key))
            trusted = security.cert_dir / TRUSTED
            options = CertificateValidatorOptions.BASIC_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
            store = None
            if any(path.is_file() for path in trusted.iterdir()):  # only the clients put there
                options |= CertificateValidatorOptions.TRUSTED
                store = TrustStore([trusted], [])
                await store.load()
            else:
                logger.warning("OPC UA: no client certificates in %s, so any client certificate is accepted", trusted)
            self.server.set_certificate_validator(CertificateValidator(options, store))
        self.server.set_identity_tokens(
            [ua.AnonymousIdentityToken] if security.anonymous else [ua.UserNameIdentityToken]
        )
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
        for field, (kind, initial) in STATUS.items():
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

    def __init__(self, after_id: int, project_id: int | None = None) -> None:
        self.low_water = after_id
        self.project_id = project_id  # only this project's verdicts (None: all)
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
            if self.project_id is not None and verdict.project_id != self.project_id:
                continue
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


async def serve(
    endpoint: str,
    *,
    poll_seconds: float,
    stop: asyncio.Event,
    ready: Any = None,
    security: Security | None = None,
    status_every_s: float = STATIONS_EVERY_S,
) -> None:
    """Run the server until ``stop`` is set: the latest verdict of every station first, then each
    new final verdict as it commits (polled every ``poll_seconds``). ``ready`` is called with the
    server once it serves."""
    security = security or Security()
    if security.problems():
        raise ValueError("; ".join(security.problems()))
    loop = asyncio.get_running_loop()
    server = VerdictServer(endpoint, security)
    await server.start()
    try:
        latest = await sync_to_async(_latest_messages, thread_sensitive=True)(security.project_id)
        for message, line, name in latest:
            await server.apply(message, line, name)
        await _add_stations(server)
        start_after = max((message["verdict_id"] for message, _, _ in latest), default=0)
        newest = await sync_to_async(_newest_id, thread_sensitive=True)()
        feed = VerdictFeed(after_id=max(start_after, newest), project_id=security.project_id)
        if ready is not None:
            ready(server)
        stations_read_at = loop.time()
        while not stop.is_set():
            if loop.time() - stations_read_at > status_every_s:  # stations added since, status
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
    """An object for every active station, so a PLC finds its nodes before the first verdict,
    and each station's status (open reviews, drift)."""
    project_id = server.security.project_id
    for station_id, line, name in await sync_to_async(_active_stations, thread_sensitive=True)(project_id):
        await server.station(station_id, line, name)
    if not server.security.anonymous:
        await _close_revoked_sessions(server)
    status = await sync_to_async(_station_status, thread_sensitive=True)(project_id)
    for station_id, nodes in server.stations.items():
        values = status.get(station_id, {})
        for field, (kind, initial) in STATUS.items():
            value = values.get(field, initial)
            if await nodes[field].read_value() != value:  # subscribers hear of changes only
                await nodes[field].write_value(ua.DataValue(ua.Variant(value, kind)))


async def _close_revoked_sessions(server: VerdictServer) -> None:
    """Close the sessions of accounts that are no longer active members of the served project,
    and forget their remembered sign-ins: revoking access stops reads within a refresh (10 s).
    (asyncua keeps its sessions in ``InternalServer._external_sessions``; pinned to asyncua 2.1
    and tested.)"""
    sessions = list(getattr(server.server.iserver, "_external_sessions", {}).values())
    names = {session.user.name for session in sessions if getattr(session, "user", None) and session.user.name}
    if not names:
        return
    assert server.security.project_id is not None
    members = await sync_to_async(_active_members, thread_sensitive=True)(server.security.project_id, names)
    revoked = names - members
    if not revoked:
        return
    manager = server.server.iserver.user_manager
    if isinstance(manager, ProjectMembers):
        manager.forget(revoked)
    for session in sessions:
        if getattr(session, "user", None) and session.user.name in revoked:
            logger.warning("OPC UA: closing the session of %r, no longer a member", session.user.name)
            await session.close_session()


def _active_members(project_id: int, usernames: set[str]) -> set[str]:
    from inspection.models import Membership

    close_old_connections()
    rows = Membership.objects.filter(project_id=project_id, user__username__in=usernames, user__is_active=True)
    return set(rows.values_list("user__username", flat=True))


def _station_status(project_id: int | None) -> dict[int, dict[str, Any]]:
    from inspection.selectors import stations_drift_state
    from review.selectors import open_reviews_by_station

    close_old_connections()
    out: dict[int, dict[str, Any]] = {}
    for station_id, count in open_reviews_by_station(project_id=project_id).items():
        out.setdefault(station_id, {})["OpenReviews"] = count
    for station_id, (alerted, held) in stations_drift_state(project_id=project_id).items():
        out.setdefault(station_id, {}).update({"DriftAlert": alerted, "DriftHeld": held})
    return out


def _active_stations(project_id: int | None) -> list[tuple[int, str, str]]:
    from inspection.models import Station

    close_old_connections()
    rows = Station.objects.filter(is_active=True).select_related("line").order_by("id")
    if project_id is not None:
        rows = rows.filter(project_id=project_id)
    return [(station.pk, station.line.name, station.name) for station in rows]


def _latest_messages(project_id: int | None) -> list[tuple[dict[str, Any], str, str]]:
    from inspection.selectors import latest_final_verdicts_by_station

    close_old_connections()
    out = []
    for verdict in latest_final_verdicts_by_station(project_id=project_id):
        if verdict.inspection is None:
            continue
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
