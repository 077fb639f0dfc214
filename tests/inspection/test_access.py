"""Tenancy and roles: every object belongs to one project and is seen only by its members."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import Annotation
from inspection.models import (
    Inspection,
    Membership,
    ModelVersion,
    Project,
    StationToken,
    Verdict,
    Webhook,
    WebhookDelivery,
)
from inspection.services import inspection_run
from review.models import ReviewItem
from review.services import review_decide
from tests.factories import PASSWORD, make_project, make_station, make_user, part_jpeg, upload

pytestmark = pytest.mark.django_db


@dataclass
class Tenant:
    project: Project
    reviewer: Any
    admin: Any
    inspection: Inspection
    item: ReviewItem
    verdict: Verdict
    annotation: Annotation
    membership: Membership
    model_version: ModelVersion
    delivery: WebhookDelivery
    token: StationToken


def build_tenant(seed: int) -> Tenant:
    """A project with a decided part and an open one, as the loop leaves them."""
    project = make_project()
    station = make_station(project)
    reviewer = make_user(project, role="reviewer")
    admin = make_user(project, role="admin")
    client = APIClient()
    ids = []
    for index in range(2):
        response = client.post(
            "/api/v1/inspections",
            {"part_serial": f"S{seed}-{index}", "image": upload(part_jpeg(seed * 10 + index))},
            format="multipart",
            headers=station.auth,
        )
        ids.append(response.json()["id"])
        inspection_run(inspection_id=ids[-1])
    decided = ReviewItem.objects.get(inspection_id=ids[0])
    verdict = review_decide(item=decided, reviewer=reviewer, outcome="pass")
    assert verdict is not None
    return Tenant(
        project=project,
        reviewer=reviewer,
        admin=admin,
        inspection=Inspection.objects.get(pk=ids[1]),
        item=ReviewItem.objects.get(inspection_id=ids[1]),
        verdict=verdict,
        annotation=Annotation.objects.get(review_item=decided),
        membership=Membership.objects.get(user=reviewer, project=project),
        model_version=ModelVersion.objects.create(project=project, kind="anomaly", status="ready"),
        delivery=WebhookDelivery.objects.create(
            webhook=Webhook.objects.create(project=project, url="https://mes.example.com/hook", secret="s" * 64),
            verdict=verdict,
        ),
        token=StationToken.objects.filter(station__project=project).first() or StationToken(),
    )


@pytest.fixture
def tenants() -> tuple[Tenant, Tenant]:
    return build_tenant(1), build_tenant(2)


DETAIL_URLS: list[tuple[str, Callable[[Tenant], str]]] = [
    ("project", lambda t: f"/api/v1/projects/{t.project.pk}"),
    ("inspection", lambda t: f"/api/v1/inspections/{t.inspection.pk}"),
    ("inspection image", lambda t: f"/api/v1/inspections/{t.inspection.pk}/image"),
    ("part", lambda t: f"/api/v1/parts/{t.inspection.part_id}"),
    ("verdict", lambda t: f"/api/v1/verdicts/{t.verdict.pk}"),
    ("review item", lambda t: f"/api/v1/review-items/{t.item.pk}"),
    ("annotation", lambda t: f"/api/v1/annotations/{t.annotation.pk}"),
    ("membership", lambda t: f"/api/v1/memberships/{t.membership.pk}"),
    ("model version", lambda t: f"/api/v1/model-versions/{t.model_version.pk}"),
    ("webhook delivery", lambda t: f"/api/v1/webhook-deliveries/{t.delivery.pk}"),
    ("routing", lambda t: f"/api/v1/projects/{t.project.pk}/routing"),
    ("drift", lambda t: f"/api/v1/projects/{t.project.pk}/drift"),
]

ACTION_URLS: list[tuple[str, Callable[[Tenant], str]]] = [
    ("decide", lambda t: f"/api/v1/review-items/{t.item.pk}/decide"),
    ("release", lambda t: f"/api/v1/review-items/{t.item.pk}/release"),
    ("deploy", lambda t: f"/api/v1/model-versions/{t.model_version.pk}/deploy"),
    ("cancel training", lambda t: f"/api/v1/model-versions/{t.model_version.pk}/cancel"),
    ("recalibrate", lambda t: f"/api/v1/projects/{t.project.pk}/recalibrate"),
    ("deactivate webhook", lambda t: f"/api/v1/webhooks/{t.delivery.webhook_id}/deactivate"),
    ("revoke token", lambda t: f"/api/v1/station-tokens/{t.token.pk}/revoke"),
    ("issue token", lambda t: f"/api/v1/stations/{t.inspection.station_id}/tokens"),
    ("accept drift baseline", lambda t: f"/api/v1/stations/{t.inspection.station_id}/drift-baseline"),
]


@pytest.mark.parametrize(("noun", "url_of"), ACTION_URLS, ids=[noun for noun, _ in ACTION_URLS])
def test_every_action_on_project_b_answers_404_to_project_a_and_changes_nothing(
    tenants: tuple[Tenant, Tenant], noun: str, url_of: Callable[[Tenant], str]
) -> None:
    a, b = tenants
    client = APIClient()
    client.force_authenticate(a.admin)
    before = _snapshot()

    response = client.post(url_of(b), {"outcome": "pass"}, format="json")

    assert response.status_code == 404, (noun, response.status_code)
    assert _snapshot() == before


@pytest.mark.parametrize(("noun", "url_of"), DETAIL_URLS, ids=[noun for noun, _ in DETAIL_URLS])
@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_a_member_of_project_a_gets_404_for_every_object_of_project_b(
    tenants: tuple[Tenant, Tenant], noun: str, url_of: Callable[[Tenant], str], method: str
) -> None:
    a, b = tenants
    client = APIClient()
    client.force_authenticate(a.admin)
    before = _snapshot()

    payload = None if method == "get" else {"role": "admin", "name": "x"}
    response = getattr(client, method)(url_of(b), payload, format="json")

    # 404, or 405 where the endpoint has no such method at all (then the caller's own object
    # answers 405 too, so the status reveals nothing about project B).
    if response.status_code == 405:
        assert getattr(client, method)(url_of(a), payload, format="json").status_code in {405}
    else:
        assert response.status_code == 404, (noun, method, response.status_code)
    assert _snapshot() == before


def test_deciding_another_projects_review_item_is_404_and_changes_nothing(tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    client = APIClient()
    client.force_authenticate(a.reviewer)

    response = client.post(f"/api/v1/review-items/{b.item.pk}/decide", {"outcome": "pass"}, format="json")

    assert response.status_code == 404
    b.item.refresh_from_db()
    assert b.item.status == "open"
    assert not Verdict.objects.filter(part=b.item.part).exists()


LIST_URLS = [
    "/api/v1/projects",
    "/api/v1/inspections",
    "/api/v1/parts",
    "/api/v1/verdicts",
    "/api/v1/review-items",
    "/api/v1/annotations",
    "/api/v1/defect-classes",
    "/api/v1/memberships",
    "/api/v1/model-versions",
    "/api/v1/webhooks",
    "/api/v1/audit-events",
]


@pytest.mark.parametrize("url", LIST_URLS)
def test_lists_show_only_the_callers_projects(tenants: tuple[Tenant, Tenant], url: str) -> None:
    a, _ = tenants
    client = APIClient()
    client.force_authenticate(a.admin)

    rows = client.get(url).json()["results"]

    assert rows, url
    projects = {row.get("project", row.get("id")) for row in rows}
    assert projects == {a.project.pk}


def test_filtering_by_another_projects_id_returns_nothing(tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    client = APIClient()
    client.force_authenticate(a.admin)

    assert client.get(f"/api/v1/inspections?project={b.project.pk}").json()["results"] == []


RELATED_FILTERS: list[tuple[str, Callable[[Tenant], int]]] = [
    ("/api/v1/inspections?project={}", lambda t: t.project.pk),
    ("/api/v1/inspections?part={}", lambda t: t.inspection.part_id),
    ("/api/v1/inspections?station={}", lambda t: t.inspection.station_id),
    ("/api/v1/verdicts?part={}", lambda t: t.verdict.part_id),
    ("/api/v1/annotations?review_item={}", lambda t: t.annotation.review_item_id or 0),
    ("/api/v1/station-tokens?station={}", lambda t: t.inspection.station_id),
    ("/api/v1/webhook-deliveries?webhook={}", lambda t: t.delivery.webhook_id),
    ("/api/v1/model-versions?project={}", lambda t: t.project.pk),
    ("/api/v1/audit-events?project={}", lambda t: t.project.pk),
]


@pytest.mark.parametrize(("url", "id_of"), RELATED_FILTERS, ids=[url for url, _ in RELATED_FILTERS])
def test_a_filter_by_another_projects_id_answers_as_for_an_id_that_does_not_exist(
    tenants: tuple[Tenant, Tenant], url: str, id_of: Callable[[Tenant], int]
) -> None:
    a, b = tenants
    client = APIClient()
    client.force_authenticate(a.admin)

    theirs = client.get(url.format(id_of(b)))
    nobodys = client.get(url.format(10**9))
    mine = client.get(url.format(id_of(a)))

    # The same empty page either way: the answer does not tell which ids exist elsewhere.
    assert (
        (theirs.status_code, theirs.json()["results"])
        == (nobodys.status_code, nobodys.json()["results"])
        == (
            200,
            [],
        )
    )
    assert mine.status_code == 200 and mine.json()["results"]  # the filter itself works


def _snapshot() -> tuple[Any, ...]:
    return (
        list(Project.objects.values_list("id", "name").order_by("id")),
        list(Membership.objects.values_list("id", "role", "project_id").order_by("id")),
        list(ReviewItem.objects.values_list("id", "status").order_by("id")),
        Verdict.objects.count(),
        Annotation.objects.count(),
        Inspection.objects.count(),
        list(ModelVersion.objects.values_list("id", "status").order_by("id")),
        list(Webhook.objects.values_list("id", "is_active").order_by("id")),
        list(StationToken.objects.values_list("id", "revoked_at").order_by("id")),
    )


# --- ownership fields and roles ----------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [{"project": "B"}, {"organization": 1}, {"id": 999}, {"line_id": 7}, {"role": "manager", "project": "B"}],
)
def test_patching_ownership_fields_is_rejected_and_changes_nothing(
    tenants: tuple[Tenant, Tenant], payload: dict[str, Any]
) -> None:
    a, b = tenants
    payload = {key: (b.project.pk if value == "B" else value) for key, value in payload.items()}
    client = APIClient()
    client.force_authenticate(a.admin)
    before = _snapshot()

    url = f"/api/v1/memberships/{a.membership.pk}" if "role" in payload else f"/api/v1/projects/{a.project.pk}"
    response = client.patch(url, payload, format="json")

    assert response.status_code == 400
    assert set(response.json()["errors"]) & set(payload)
    assert _snapshot() == before


def test_a_manager_updates_the_decision_thresholds_of_their_project(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    manager = make_user(a.project, role="manager")
    client = APIClient()
    client.force_authenticate(manager)

    response = client.patch(f"/api/v1/projects/{a.project.pk}", {"auto_pass_threshold": 0.05}, format="json")

    assert response.status_code == 200
    a.project.refresh_from_db()
    assert a.project.auto_pass_threshold == 0.05


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_roles_below_manager_cannot_change_project_settings(tenants: tuple[Tenant, Tenant], role: str) -> None:
    a, _ = tenants
    client = APIClient()
    client.force_authenticate(make_user(a.project, role=role))

    response = client.patch(f"/api/v1/projects/{a.project.pk}", {"auto_pass_threshold": 0.5}, format="json")

    assert response.status_code == 403


def test_an_annotator_cannot_decide_review_items(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    client = APIClient()
    client.force_authenticate(make_user(a.project, role="annotator"))

    response = client.post(f"/api/v1/review-items/{a.item.pk}/decide", {"outcome": "pass"}, format="json")

    assert response.status_code == 404
    assert not Verdict.objects.filter(part=a.item.part).exists()


@pytest.mark.parametrize("role", ["manager", "admin"])
def test_nobody_can_change_their_own_role(tenants: tuple[Tenant, Tenant], role: str) -> None:
    a, _ = tenants
    user = make_user(a.project, role=role)
    own = Membership.objects.get(user=user, project=a.project)
    client = APIClient()
    client.force_authenticate(user)

    response = client.patch(
        f"/api/v1/memberships/{own.pk}", {"role": "admin" if role == "manager" else "reviewer"}, format="json"
    )

    assert response.status_code == 403
    own.refresh_from_db()
    assert own.role == role


def test_a_project_admin_changes_another_members_role(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    client = APIClient()
    client.force_authenticate(a.admin)

    response = client.patch(f"/api/v1/memberships/{a.membership.pk}", {"role": "manager"}, format="json")

    assert response.status_code == 200
    assert Membership.objects.get(pk=a.membership.pk).role == "manager"


def test_a_staff_user_cannot_use_the_admin_to_edit_themselves() -> None:
    staff = make_user(None, is_staff=True)
    from django.contrib.auth.models import Permission

    staff.user_permissions.set(Permission.objects.all())
    client = Client()
    client.force_login(staff)

    page = client.get(f"/admin/auth/user/{staff.pk}/change/")
    post = client.post(f"/admin/auth/user/{staff.pk}/change/", {"username": staff.username, "is_superuser": "on"})

    assert page.status_code == 302 and "/admin/login/" in page["Location"]
    assert post.status_code == 302
    staff.refresh_from_db()
    assert not staff.is_superuser


def test_a_superuser_reaches_the_admin() -> None:
    root = get_user_model().objects.create_superuser("root", password=PASSWORD)
    client = Client()
    client.force_login(root)

    assert client.get("/admin/").status_code == 200


# --- query parameters, CSRF, redirects, signup ------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "created_by__password__startswith=a",
        "part__project__memberships__user__password__startswith=p",
        "ordering=user__password",
        "ordering=-part__project__memberships__user__password",
        "unknown=1",
    ],
)
def test_filters_and_ordering_outside_the_allowlist_are_rejected(tenants: tuple[Tenant, Tenant], query: str) -> None:
    a, _ = tenants
    client = APIClient()
    client.force_authenticate(a.admin)

    response = client.get(f"/api/v1/inspections?{query}")

    assert response.status_code == 400
    assert "results" not in response.json()


def test_an_allowed_filter_and_ordering_work(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    client = APIClient()
    client.force_authenticate(a.admin)

    response = client.get(f"/api/v1/inspections?project={a.project.pk}&status=pending&ordering=-received_at")

    assert response.status_code == 200


def test_a_cross_site_post_without_csrf_token_is_refused(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    client = Client(enforce_csrf_checks=True)
    client.force_login(a.reviewer)

    response = client.post(
        f"/api/v1/review-items/{a.item.pk}/decide", {"outcome": "pass"}, content_type="application/json"
    )
    wrong = client.post(
        f"/api/v1/review-items/{a.item.pk}/decide",
        {"outcome": "pass"},
        content_type="application/json",
        headers={"X-CSRFToken": "x" * 32},
    )

    assert (response.status_code, wrong.status_code) == (403, 403)
    a.item.refresh_from_db()
    assert a.item.status == "open"


def test_login_csrf_is_enforced_and_a_correct_token_signs_in(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    client = Client(enforce_csrf_checks=True)

    refused = client.post(
        "/api/v1/auth/login", {"username": a.reviewer.username, "password": PASSWORD}, content_type="application/json"
    )
    client.get("/api/v1/auth/csrf")
    token = client.cookies["csrftoken"].value
    accepted = client.post(
        "/api/v1/auth/login",
        {"username": a.reviewer.username, "password": PASSWORD},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )

    assert refused.status_code == 403
    assert accepted.status_code == 200
    assert accepted.json()["projects"] == [{"id": a.project.pk, "name": a.project.name, "role": "reviewer"}]


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "https:evil.example", "/\\evil.example"]
)
def test_login_never_redirects_off_site(tenants: tuple[Tenant, Tenant], target: str) -> None:
    a, _ = tenants
    client = Client()

    response = client.post(
        f"/accounts/login/?next={target}", {"username": a.reviewer.username, "password": PASSWORD, "next": target}
    )

    assert response.status_code == 302
    assert response["Location"] == "/"


def test_there_is_no_anonymous_self_signup() -> None:
    client = APIClient()
    for url in ["/api/v1/auth/signup", "/api/v1/auth/register", "/api/v1/users", "/accounts/signup/"]:
        assert client.post(url, {"username": "mallory", "password": "x" * 20}, format="json").status_code == 404
    assert not get_user_model().objects.filter(username="mallory").exists()


def test_an_inactive_user_cannot_sign_in(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    a.reviewer.is_active = False
    a.reviewer.save()
    client = APIClient()

    response = client.post("/api/v1/auth/login", {"username": a.reviewer.username, "password": PASSWORD}, format="json")

    assert response.status_code == 400
    assert "_auth_user_id" not in client.session


def test_every_api_filterset_filters_related_objects_by_id() -> None:
    from inspection.filters import ScopedFilterSet
    from tests.inspection.test_json_parsers_everywhere import api_views

    filtersets = {view.filterset_class for _, view in api_views() if getattr(view, "filterset_class", None)}

    assert len(filtersets) > 5
    assert [f.__name__ for f in filtersets if not issubclass(f, ScopedFilterSet)] == []


def test_a_signed_in_session_ends_when_its_user_is_deactivated() -> None:
    user = make_user(make_project(), role="manager")
    browser = Client()
    browser.force_login(user)
    assert browser.get("/api/v1/projects").status_code == 200

    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    response = browser.get("/api/v1/projects")

    assert response.status_code in {401, 403}
    assert "results" not in response.json()
