from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from inspection.errors import NotFound
from inspection.permissions import CAN_REVIEW
from inspection.selectors import project_ids_for
from review.models import ReviewItem


def review_items_for(*, user: Any) -> QuerySet[ReviewItem]:
    """Items of the projects where ``user`` may review, oldest first."""
    return ReviewItem.objects.filter(project_id__in=project_ids_for(user=user, roles=CAN_REVIEW)).select_related(
        "part", "inspection", "inspection__station", "inspection__station__line", "inspection__image"
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
    )
