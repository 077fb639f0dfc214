from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Prefetch, QuerySet

from inspection.errors import NotFound
from inspection.models import Inspection
from inspection.permissions import CAN_REVIEW
from inspection.selectors import project_ids_for
from review.models import GoldenPart, ReviewItem


def _part_views() -> Prefetch[Any]:
    # Every camera's image of the part, for the reviewer to look through (one query per page).
    return Prefetch(
        "part__inspections",
        queryset=Inspection.objects.select_related("station", "station__line", "image").order_by("id"),
    )


def review_items_for(*, user: Any) -> QuerySet[ReviewItem]:
    """Items of the projects where ``user`` may review, oldest first."""
    return (
        ReviewItem.objects.filter(project_id__in=project_ids_for(user=user, roles=CAN_REVIEW))
        .select_related("part", "inspection", "inspection__station", "inspection__station__line", "inspection__image")
        .prefetch_related(_part_views())
    )


def access_review_item(*, user: Any, item_id: int) -> ReviewItem:
    item = review_items_for(user=user).filter(pk=item_id).first()
    if item is None:
        raise NotFound("Review item not found.")
    return item


def reviewable_project_ids(*, user: Any) -> list[int]:
    return list(project_ids_for(user=user, roles=CAN_REVIEW))


def review_items_for_push() -> QuerySet[ReviewItem]:
    """Unscoped on purpose: used only to build the payload for the item's own project group."""
    return ReviewItem.objects.select_related(
        "part", "inspection", "inspection__station", "inspection__station__line", "inspection__image"
    ).prefetch_related(_part_views())


def review_queue_stats(*, user: Any) -> list[dict[str, Any]]:
    """Backlog per reviewable project: open and claimed counts, oldest wait, SLA breaches."""
    from datetime import timedelta

    from django.conf import settings
    from django.db.models import Count, Min, Q
    from django.utils import timezone

    now = timezone.now()
    breach_before = now - timedelta(minutes=settings.LOUPE_REVIEW_SLA_MINUTES)
    waiting = [ReviewItem.Status.OPEN, ReviewItem.Status.CLAIMED]
    rows = (
        ReviewItem.objects.filter(project_id__in=reviewable_project_ids(user=user), status__in=waiting)
        .values("project")
        .annotate(
            open=Count("id", filter=Q(status=ReviewItem.Status.OPEN)),
            claimed=Count("id", filter=Q(status=ReviewItem.Status.CLAIMED)),
            oldest=Min("created_at"),
            sla_breaches=Count("id", filter=Q(created_at__lt=breach_before)),
        )
        .order_by("project")
    )
    return [
        {
            "project": row["project"],
            "open": row["open"],
            "claimed": row["claimed"],
            "oldest_waiting_seconds": (now - row["oldest"]).total_seconds() if row["oldest"] else None,
            "sla_breaches": row["sla_breaches"],
        }
        for row in rows
    ]


def golden_parts_for(*, user: Any) -> QuerySet[GoldenPart]:
    from inspection.permissions import CAN_MANAGE

    return GoldenPart.objects.filter(project_id__in=project_ids_for(user=user, roles=CAN_MANAGE)).select_related(
        "defect_class"
    )


@dataclass(frozen=True)
class SocketGrants:
    active: bool  # the user is active and the session still exists
    review: list[int]  # projects whose review events the socket may receive
    managed: list[int]  # projects whose training events it may receive


def socket_grants(*, user_id: int, session_key: str | None) -> SocketGrants:
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from inspection.selectors import managed_project_ids

    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None or (session_key is not None and not SessionStore().exists(session_key)):
        return SocketGrants(active=False, review=[], managed=[])
    return SocketGrants(active=True, review=reviewable_project_ids(user=user), managed=managed_project_ids(user=user))


def open_reviews_by_station(*, project_id: int | None = None) -> dict[int, int]:
    """Review items waiting for a person (open or claimed), per station of the part's image
    (all projects', or one's)."""
    from django.db.models import Count

    items = ReviewItem.objects.filter(
        status__in=[ReviewItem.Status.OPEN, ReviewItem.Status.CLAIMED], inspection__isnull=False
    )
    if project_id is not None:
        items = items.filter(project_id=project_id)
    per_station = items.order_by().values("inspection__station_id").annotate(n=Count("id"))
    return {row["inspection__station_id"]: row["n"] for row in per_station if row["inspection__station_id"]}
