"""The whole loop with its real parts: a station posts over HTTP, a Celery worker process
runs the inspection, the reviewer's websocket receives the item, the reviewer decides, the
station reads the final verdict back and the decision is stored as training data."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from annotation.models import Annotation
from inspection.models import Inspection
from tests.conftest import LiveStack
from tests.factories import PASSWORD, make_project, make_station, make_user, part_jpeg

pytestmark = pytest.mark.django_db(transaction=True)


def sign_in(live: LiveStack, user: Any) -> requests.Session:
    session = requests.Session()
    session.get(f"{live.base_url}/api/v1/auth/csrf", timeout=10)
    response = session.post(
        f"{live.base_url}/api/v1/auth/login",
        json={"username": user.username, "password": PASSWORD},
        headers={"X-CSRFToken": session.cookies["csrftoken"] or ""},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"] or ""
    return session


def review_socket(live: LiveStack, session: requests.Session | None, *, origin: str | None = None) -> ClientConnection:
    headers: dict[str, str] = {"Origin": origin or live.origin}
    if session is not None:
        headers["Cookie"] = f"sessionid={session.cookies['sessionid']}"
    return connect(f"{live.ws_url}/ws/review/", additional_headers=headers, open_timeout=10)


def next_event(socket: ClientConnection, event: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        message = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message["event"] == event:
            return message["payload"]  # type: ignore[no-any-return]


def post_part(live: LiveStack, station: Any, serial: str, seed: int = 0) -> dict[str, Any]:
    response = requests.post(
        f"{live.base_url}/api/v1/inspections",
        headers=station.auth,
        data={"part_serial": serial, "sku": "PLATE-A"},
        files={"image": ("cam.jpg", part_jpeg(seed), "image/jpeg")},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_posted_part_reaches_the_reviewer_live_and_the_decision_comes_back_to_the_station(live: LiveStack) -> None:
    project = make_project()
    scratch = project.defect_classes.get(name="scratch")
    station = make_station(project)
    reviewer = make_user(project, role="reviewer")
    session = sign_in(live, reviewer)

    with review_socket(live, session) as socket:
        assert next_event(socket, "hello") == {"projects": [project.pk], "training": []}
        posted = post_part(live, station, "SN-LIVE-1")
        pushed = next_event(socket, "review.item.added")

    assert pushed["part"]["serial"] == "SN-LIVE-1"
    assert pushed["reason"] == "cold_start"
    assert pushed["image"]["inspection"] == posted["id"]

    decided = session.post(
        f"{live.base_url}/api/v1/review-items/{pushed['id']}/decide",
        json={"outcome": "fail", "defect_class": scratch.pk, "comment": "long scratch near the edge"},
        timeout=10,
    )
    assert decided.status_code == 201, decided.text

    read_back = requests.get(
        f"{live.base_url}/api/v1/inspections/{posted['id']}", headers=station.auth, timeout=10
    ).json()
    assert read_back["status"] == "done"
    assert read_back["verdict"]["outcome"] == "fail"
    assert read_back["verdict"]["defect_class"] == "scratch"
    assert read_back["verdict"]["source"] == "human"
    assert read_back["verdict"]["decided_by"] == reviewer.username

    inspection = Inspection.objects.get(pk=posted["id"])
    annotation = Annotation.objects.get(part=inspection.part)
    assert (annotation.image_id, annotation.source, annotation.outcome) == (inspection.image_id, "review", "fail")
    assert annotation.defect_class == scratch and annotation.author == reviewer
    assert annotation.review_item_id == pushed["id"]
    assert annotation.comment == "long scratch near the edge"


def test_a_reviewer_of_project_a_never_receives_project_b_parts(live: LiveStack) -> None:
    project_a, project_b = make_project(), make_project()
    station_a, station_b = make_station(project_a), make_station(project_b)
    session = sign_in(live, make_user(project_a, role="reviewer"))

    with review_socket(live, session) as socket:
        next_event(socket, "hello")
        post_part(live, station_b, "B-SECRET-1", seed=1)
        post_part(live, station_a, "A-1", seed=2)
        # Only one worker process handles both, in order: if B's push were delivered to
        # this socket it would arrive before A's.
        first = next_event(socket, "review.item.added")

    assert first["part"]["serial"] == "A-1"
    assert first["project"] == project_a.pk


def test_an_annotator_is_not_subscribed_to_review_pushes(live: LiveStack) -> None:
    project = make_project()
    session = sign_in(live, make_user(project, role="annotator"))

    with review_socket(live, session) as socket:
        assert next_event(socket, "hello") == {"projects": [], "training": []}


def test_an_anonymous_websocket_is_refused_before_joining_any_group(live: LiveStack) -> None:
    with pytest.raises(InvalidStatus) as refused:
        review_socket(live, None)

    assert refused.value.response.status_code == 403


def test_a_cross_origin_websocket_with_a_valid_session_is_refused(live: LiveStack) -> None:
    project = make_project()
    session = sign_in(live, make_user(project, role="reviewer"))

    with pytest.raises(InvalidStatus) as refused:
        review_socket(live, session, origin="https://evil.example")

    assert refused.value.response.status_code == 403


def test_a_forged_session_cookie_is_treated_as_anonymous(live: LiveStack) -> None:
    session = requests.Session()
    session.cookies.set("sessionid", "forged-or-signed-with-a-published-key")

    assert session.get(f"{live.base_url}/api/v1/auth/me", timeout=10).status_code == 401
    with pytest.raises(InvalidStatus):
        review_socket(live, session)


def test_a_claim_by_one_reviewer_is_pushed_to_the_others_screens(live: LiveStack) -> None:
    project = make_project()
    station = make_station(project)
    first, second = sign_in(live, make_user(project)), sign_in(live, make_user(project))

    with review_socket(live, second) as socket:
        next_event(socket, "hello")
        post_part(live, station, "CLAIM-1")
        added = next_event(socket, "review.item.added")
        claimed = first.post(f"{live.base_url}/api/v1/review-items/claim", json={}, timeout=10)
        assert claimed.status_code == 200 and claimed.json()["id"] == added["id"]
        pushed = next_event(socket, "review.item.claimed")
        released = first.post(f"{live.base_url}/api/v1/review-items/{added['id']}/release", timeout=10)
        assert released.status_code == 200
        back = next_event(socket, "review.item.released")

    assert pushed["id"] == added["id"] and pushed["status"] == "claimed"
    assert back["id"] == added["id"] and back["status"] == "open"
