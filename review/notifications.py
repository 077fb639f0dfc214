"""Events pushed to the reviewers' websockets. Called through ``transaction.on_commit``
only, so a screen never shows an item that was rolled back."""

from __future__ import annotations

from typing import Any

from inspection.channel_layer import group_send
from review.models import ReviewItem


def review_group(project_id: int) -> str:
    return f"project-{project_id}-review"


def _broadcast(project_id: int, event: str, payload: dict[str, Any]) -> None:
    group_send(
        review_group(project_id),
        {"type": "review.event", "kind": "review", "project": project_id, "event": event, "payload": payload},
    )


def notify_review_item_added(*, item_id: int, event: str = "review.item.added") -> None:
    from review.selectors import review_items_for_push
    from review.serializers import ReviewItemOutputSerializer

    item = review_items_for_push().filter(pk=item_id).first()
    if item is None:
        return
    _broadcast(item.project_id, event, ReviewItemOutputSerializer(item).data)


def notify_review_item_released(*, item_id: int) -> None:
    """The item is back in the queue; screens show it again (full payload: it may be new to them)."""
    notify_review_item_added(item_id=item_id, event="review.item.released")


def notify_review_item_claimed(*, item: ReviewItem) -> None:
    # Who holds it and until when: other screens drop the item.
    _broadcast(
        item.project_id,
        "review.item.claimed",
        {
            "id": item.pk,
            "status": item.status,
            "claimed_by": item.claimed_by_id,
            "lease_expires_at": item.lease_expires_at.isoformat() if item.lease_expires_at else None,
        },
    )


def notify_review_item_decided(*, item: ReviewItem) -> None:
    _broadcast(item.project_id, "review.item.decided", {"id": item.pk, "status": item.status})
