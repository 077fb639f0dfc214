"""A socket carries only what its user may see, for as long as they may see it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from inspection.models import Membership
from tests.conftest import LiveStack
from tests.factories import make_project, make_station, make_user
from tests.review.test_live_loop import next_event, post_part, review_socket, sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def events_for(socket: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Everything the socket receives in ``seconds`` (stops early if the server closes it)."""
    received = []
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            received.append(json.loads(socket.recv(timeout=left)))
    except TimeoutError:
        pass
    except ConnectionClosed:
        received.append({"event": "closed", "code": socket.close_code})
    return received


def test_subscribing_to_another_projects_feed_is_refused(live: LiveStack) -> None:
    mine, theirs = make_project(), make_project()
    station_mine, station_theirs = make_station(mine), make_station(theirs)
    session = sign_in(live, make_user(mine))

    with review_socket(live, session) as socket:
        next_event(socket, "hello")
        socket.send(json.dumps({"type": "subscribe", "project": theirs.pk}))
        refused = next_event(socket, "error")
        post_part(live, station_theirs, "THEIRS-1", seed=1)
        post_part(live, station_mine, "MINE-1", seed=2)
        first = next_event(socket, "review.item.added")

    assert refused == {"project": theirs.pk, "code": "forbidden"}
    assert first["part"]["serial"] == "MINE-1"


def test_a_revoked_role_stops_pushes(live: LiveStack) -> None:
    project = make_project()
    station = make_station(project)
    reviewer, colleague = make_user(project), make_user(project)
    session, colleague_session = sign_in(live, reviewer), sign_in(live, colleague)

    with review_socket(live, session) as socket, review_socket(live, colleague_session) as control:
        next_event(socket, "hello")
        next_event(control, "hello")
        Membership.objects.filter(user=reviewer, project=project).delete()
        time.sleep(1.5)  # past LOUPE_WS_RECHECK_SECONDS=1 of the test server
        post_part(live, station, "AFTER-REVOKE")
        pushed = next_event(control, "review.item.added")  # the push was sent: to the colleague
        received = events_for(socket, 2)

    assert pushed["part"]["serial"] == "AFTER-REVOKE"
    assert [event["event"] for event in received if event["event"].startswith("review.")] == []


@pytest.mark.parametrize("how", ["logout", "deactivation"])
def test_logout_or_deactivation_closes_the_socket_before_the_next_push(live: LiveStack, how: str) -> None:
    project = make_project()
    station = make_station(project)
    reviewer = make_user(project)
    session = sign_in(live, reviewer)

    with review_socket(live, session) as socket:
        next_event(socket, "hello")
        if how == "logout":
            assert session.post(f"{live.base_url}/api/v1/auth/logout", timeout=10).status_code == 204
        else:
            reviewer.is_active = False
            reviewer.save(update_fields=["is_active"])
        time.sleep(1.5)
        post_part(live, station, f"AFTER-{how}")
        received = events_for(socket, 4)

    assert received == [{"event": "closed", "code": 4403}]


def test_a_flooding_client_is_disconnected(live: LiveStack) -> None:
    session = sign_in(live, make_user(make_project()))

    with review_socket(live, session) as socket:
        next_event(socket, "hello")
        for _ in range(60):
            socket.send(json.dumps({"type": "ping"}))
        # Returns as soon as the server closes the socket; the long wait only matters on a
        # loaded machine, where 60 pongs can take seconds.
        received = events_for(socket, 20)

    assert received[-1] == {"event": "closed", "code": 4429}


def test_an_oversized_frame_is_refused_without_taking_the_server_down(live: LiveStack) -> None:
    session = sign_in(live, make_user(make_project()))

    with review_socket(live, session) as socket:
        next_event(socket, "hello")
        socket.send("x" * 200_000)
        received = events_for(socket, 20)  # returns as soon as the server closes it
    with review_socket(live, session) as again:
        hello = next_event(again, "hello")

    assert received and received[-1]["event"] == "closed"
    assert "projects" in hello


@pytest.mark.parametrize(
    "frame",
    [b"\x00\x01binary", "", "{not json", "[" * 20_000 + "]" * 20_000, '{"type": NaN}'],
    ids=["binary", "empty", "malformed", "nested-20000-deep", "nan"],
)
def test_a_frame_that_is_not_json_text_gets_an_error_and_the_socket_stays_open(
    live: LiveStack, frame: str | bytes
) -> None:
    session = sign_in(live, make_user(make_project()))

    with review_socket(live, session) as socket:
        next_event(socket, "hello")
        socket.send(frame)
        refused = next_event(socket, "error", timeout_s=10)
        socket.send(json.dumps({"type": "ping"}))
        answer = json.loads(socket.recv(timeout=10))

    assert refused["code"] == "bad_message" and refused["detail"]
    assert answer == {"event": "pong"}  # the connection survived (a crash would close it with 1011)


def test_a_project_granted_after_connecting_can_be_subscribed_and_its_pushes_arrive(live: LiveStack) -> None:
    project = make_project()
    station = make_station(project)
    newcomer = make_user(make_project())
    session = sign_in(live, newcomer)

    with review_socket(live, session) as socket:
        assert next_event(socket, "hello")["projects"] == [newcomer.memberships.get().project_id]
        Membership.objects.create(user=newcomer, project=project, role="reviewer")
        time.sleep(1.5)  # past LOUPE_WS_RECHECK_SECONDS=1 of the test server
        socket.send(json.dumps({"type": "subscribe", "project": project.pk}))
        subscribed = next_event(socket, "subscribed", timeout_s=10)
        post_part(live, station, "FOR-THE-NEWCOMER")
        pushed = next_event(socket, "review.item.added")

    assert subscribed == {"project": project.pk, "code": None}
    assert pushed["part"]["serial"] == "FOR-THE-NEWCOMER"
