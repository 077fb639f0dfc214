"""Final verdicts over OPC UA: a real ``manage.py opcua_server`` process serves each station's
latest final verdict, and a real OPC UA client (asyncua) reads it, is notified of new ones
through a subscription, and cannot write."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
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
    """Start the server after the test has written what it should find at startup (``start``
    takes extra environment variables and arguments, and can be called again after ``stop``)."""
    started: list[ServiceProcess] = []
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/loupe/"

    def start(env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> ServiceProcess:
        for running in started:
            running.stop()
        full_env = {**os.environ, "DATABASE_URL": _database_url(), "PYTHONUNBUFFERED": "1", **(env or {})}
        argv = [sys.executable, "manage.py", "opcua_server", "--endpoint", endpoint, "--poll", "0.05", *args]
        service = _spawn("opcua", argv, full_env)
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


def test_each_station_shows_its_review_backlog_and_drift_so_a_plc_can_light_an_andon(
    opcua_server: tuple[str, Any],
) -> None:
    from inspection.models import DriftAlert, ModelVersion
    from inspection.selectors import deployed_set_label
    from review.models import ReviewItem

    endpoint, start = opcua_server
    project = make_project()
    Project.objects.filter(pk=project.pk).update(drift_review="models")
    ModelVersion.objects.create(project=project, kind="classifier", status=ModelVersion.Status.DEPLOYED)
    top = station_create(project=project, line_name="Line 1", station_name="Top cam")
    side = station_create(project=project, line_name="Line 1", station_name="Side cam")
    waiting = []
    for serial in ("R-1", "R-2"):
        verdict = record(project, top, serial, "pass")
        waiting.append(
            ReviewItem.objects.create(
                project=project, part=verdict.part, inspection=verdict.inspection, reason="uncertain"
            )
        )
    alert = DriftAlert.objects.create(
        project=project,
        station=top,
        model_version=deployed_set_label(project_id=project.pk),
        signal="anomaly_ratio",
        psi=0.6,
        p_value=1e-9,
        reference_mean=0.5,
        current_mean=0.9,
        latest_psi=0.6,
    )
    start(args=("--status-every", "0.2"))

    async def status(station_id: int) -> tuple[Any, ...]:
        async with Client(endpoint) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            return tuple(
                [
                    await client.get_node(f"ns={ns};s=station/{station_id}/{field}").read_value()
                    for field in ("OpenReviews", "DriftAlert", "DriftHeld")
                ]
            )

    drifting, steady = asyncio.run(status(top.pk)), asyncio.run(status(side.pk))
    ReviewItem.objects.filter(pk=waiting[0].pk).update(status=ReviewItem.Status.DECIDED)
    DriftAlert.objects.filter(pk=alert.pk).update(closed_at=timezone.now())
    asyncio.run(wait_for_value(endpoint, f"station/{top.pk}/DriftAlert", False))
    recovered = asyncio.run(status(top.pk))

    assert drifting == (2, True, True)
    assert steady == (0, False, False)
    assert recovered == (1, False, False)


# --- security ------------------------------------------------------------------------------

CLIENT_URI = "urn:plant:plc:press-7"


async def client_certificate(folder: Path, uri: str = CLIENT_URI) -> tuple[Path, Path]:
    """A PLC's own certificate (DER) and key (PEM), as its OPC UA client would hold them."""
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    folder.mkdir(parents=True, exist_ok=True)
    certificate, key = folder / "client-cert.der", folder / "client-key.pem"
    await setup_self_signed_certificate(
        key, certificate, uri, "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "Press 7 PLC"}
    )
    return certificate, key


async def try_read(
    endpoint: str,
    node_id: str,
    *,
    credentials: tuple[Path, Path] | None,
    user: str | None = None,
    password: str | None = None,
    uri: str = CLIENT_URI,
) -> Any:
    """The node's value read over a Basic256Sha256 SignAndEncrypt channel (a plain one without
    ``credentials``), signed in as ``user`` when given; on refusal the OPC UA status's name."""
    client = Client(endpoint, timeout=10)
    client.application_uri = uri  # what its certificate names
    if credentials is not None:
        certificate, key = credentials
        await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{certificate},{key}")
    if user is not None:
        client.set_user(user)
        client.set_password(password or "")
    try:
        async with client:
            ns = await client.get_namespace_index(NAMESPACE)
            return await client.get_node(f"ns={ns};s={node_id}").read_value()
    except ua.UaStatusCodeError as error:
        return ua.StatusCode(error.code).name
    except Exception as error:  # refused before any OPC UA status: no matching endpoint
        return f"{type(error).__name__}: {error}"


def test_a_secured_server_serves_its_projects_members_over_an_encrypted_channel_and_refuses_the_rest(
    opcua_server: tuple[str, Any], tmp_path: Path
) -> None:
    from tests.factories import PASSWORD, make_user

    endpoint, start = opcua_server
    plant, other = make_project(), make_project()
    press = station_create(project=plant, line_name="Line 1", station_name="Press 7")
    elsewhere = station_create(project=other, line_name="Line 9", station_name="Other cam")
    decided = record(plant, press, "P-1", "fail", "crack")
    record(other, elsewhere, "O-1", "pass")
    plc_account = make_user(plant, role="reviewer")
    outsider = make_user(other, role="manager")
    cert_dir = tmp_path / "opcua"
    service = start(
        {"OPCUA_SECURITY": "sign-encrypt", "OPCUA_CERT_DIR": str(cert_dir), "OPCUA_ANONYMOUS": "false"},
        ("--project", plant.name),
    )
    plc = asyncio.run(client_certificate(tmp_path / "plc"))
    verdict_node, other_node = f"station/{press.pk}/LastVerdict", f"station/{elsewhere.pk}/LastVerdict"

    member = asyncio.run(
        try_read(endpoint, verdict_node, credentials=plc, user=plc_account.username, password=PASSWORD)
    )
    member_other = asyncio.run(
        try_read(endpoint, other_node, credentials=plc, user=plc_account.username, password=PASSWORD)
    )
    anonymous = asyncio.run(try_read(endpoint, verdict_node, credentials=plc))
    wrong_password = asyncio.run(
        try_read(endpoint, verdict_node, credentials=plc, user=plc_account.username, password="guess")
    )
    not_a_member = asyncio.run(
        try_read(endpoint, verdict_node, credentials=plc, user=outsider.username, password=PASSWORD)
    )
    plain = asyncio.run(
        try_read(endpoint, verdict_node, credentials=None, user=plc_account.username, password=PASSWORD)
    )

    assert member == "fail" and decided.outcome == "fail"
    assert member_other == "BadNodeIdUnknown"  # another project's stations are not on this server
    assert anonymous == "BadIdentityTokenRejected"
    assert wrong_password == "BadUserAccessDenied" and not_a_member == "BadUserAccessDenied"
    assert plain.startswith("UaError: No matching endpoints")  # the server offers no unencrypted endpoint
    # The server made its certificate and a private key only its owner reads, and says how to trust it.
    certificate = cert_dir / "server-cert.der"
    assert certificate.is_file() and (cert_dir / "server-key.pem").stat().st_mode & 0o077 == 0
    assert hashlib.sha1(certificate.read_bytes(), usedforsecurity=False).hexdigest() in service.log()


def test_an_account_removed_from_the_project_is_cut_off_within_a_refresh_open_session_included(
    opcua_server: tuple[str, Any], tmp_path: Path
) -> None:
    from inspection.models import Membership
    from tests.factories import PASSWORD, make_user

    endpoint, start = opcua_server
    plant = make_project()
    press = station_create(project=plant, line_name="Line 1", station_name="Press 7")
    record(plant, press, "P-1", "pass")
    plc_account = make_user(plant, role="reviewer")
    env = {"OPCUA_SECURITY": "sign-encrypt", "OPCUA_CERT_DIR": str(tmp_path / "opcua"), "OPCUA_ANONYMOUS": "false"}
    start(env, ("--project", plant.name, "--status-every", "0.2"))
    plc = asyncio.run(client_certificate(tmp_path / "plc"))
    node_id = f"station/{press.pk}/LastVerdict"

    async def scenario() -> tuple[Any, Any]:
        client = Client(endpoint, timeout=10)
        client.application_uri = CLIENT_URI
        await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{plc[0]},{plc[1]}")
        client.set_user(plc_account.username)
        client.set_password(PASSWORD)
        await client.connect()
        try:
            ns = await client.get_namespace_index(NAMESPACE)
            node = client.get_node(f"ns={ns};s={node_id}")
            before = await node.read_value()
            await asyncio.to_thread(lambda: Membership.objects.filter(user=plc_account, project=plant).delete())
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                try:
                    await node.read_value()
                except Exception as error:  # the session was closed under it
                    return before, type(error).__name__
                assert asyncio.get_running_loop().time() < deadline, "still reading after removal"
                await asyncio.sleep(0.1)
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()

    before, after = asyncio.run(scenario())
    reconnect = asyncio.run(try_read(endpoint, node_id, credentials=plc, user=plc_account.username, password=PASSWORD))

    assert before == "pass"
    assert after  # the open session's reads fail
    assert reconnect == "BadUserAccessDenied"  # and its remembered sign-in is forgotten


def test_once_client_certificates_are_trusted_only_those_clients_connect(
    opcua_server: tuple[str, Any], tmp_path: Path
) -> None:
    endpoint, start = opcua_server
    project = make_project()
    press = station_create(project=project, line_name="Line 1", station_name="Press 7")
    record(project, press, "P-1", "pass")
    cert_dir = tmp_path / "opcua"
    env = {"OPCUA_SECURITY": "sign-encrypt", "OPCUA_CERT_DIR": str(cert_dir)}
    plc = asyncio.run(client_certificate(tmp_path / "plc"))
    laptop = "urn:somewhere:laptop"
    intruder = asyncio.run(client_certificate(tmp_path / "intruder", uri=laptop))
    node = f"station/{press.pk}/LastVerdict"

    start(env)
    any_certificate = asyncio.run(try_read(endpoint, node, credentials=intruder, uri=laptop))
    (cert_dir / "trusted" / "press-7.der").write_bytes(plc[0].read_bytes())  # the plant trusts its PLC
    start(env)
    trusted = asyncio.run(try_read(endpoint, node, credentials=plc))
    untrusted = asyncio.run(try_read(endpoint, node, credentials=intruder, uri=laptop))

    assert any_certificate == "pass"  # an empty trusted/ folder: encrypted, any client certificate
    assert trusted == "pass"
    assert untrusted == "BadCertificateUntrusted"


@pytest.mark.django_db
def test_the_server_refuses_to_start_where_passwords_would_cross_in_clear_or_no_project_bounds_who_signs_in(
    settings: Any,
) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    project = make_project()
    settings.OPCUA_ANONYMOUS = False

    settings.OPCUA_SECURITY = "none"
    with pytest.raises(CommandError, match="passwords would cross the network in clear"):
        call_command("opcua_server", "--project", project.name)
    settings.OPCUA_SECURITY = "sign-encrypt"
    with pytest.raises(CommandError, match="signing in needs a project"):
        call_command("opcua_server")
    with pytest.raises(CommandError, match="No project named"):
        call_command("opcua_server", "--project", "nope")


def test_sign_ins_cannot_stall_the_verdict_feed_a_refusal_pauses_checks_and_a_success_is_remembered() -> None:
    """Each password check blocks the server's event loop for ~0.3 s (PBKDF2), so after a refused
    sign-in the next ones are refused unchecked for a second, and a PLC that signed in reconnects
    without another check for five minutes."""
    from inspection.opcua import ProjectMembers

    now = [100.0]
    checked: list[tuple[str, str]] = []

    class Counted(ProjectMembers):
        def check(self, username: str, password: str) -> bool:  # the real one is the account's PBKDF2 check
            checked.append((username, password))
            return password == "right"

    members = Counted(1, pause_s=1.0, remember_s=300.0, clock=lambda: now[0])

    def sign_in(password: str) -> bool:
        return members.get_user(None, username="plc", password=password) is not None

    wrong = sign_in("wrong")
    right_too_soon = sign_in("right")
    now[0] += 1.5
    right = sign_in("right")
    now[0] += 200
    remembered = sign_in("right")
    other_password = sign_in("wrong")
    now[0] += 101.5  # 300 s after the check, and past the pause
    expired = sign_in("right")

    assert (wrong, right_too_soon, right, remembered, other_password, expired) == (
        False,
        False,
        True,
        True,
        False,
        True,
    )
    # Checked: the first try, the right password after the pause, the other password, the expiry.
    assert checked == [("plc", "wrong"), ("plc", "right"), ("plc", "wrong"), ("plc", "right")]
