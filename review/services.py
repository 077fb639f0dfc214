"""Writes for review items: open them, decide them."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.services import annotation_record_review_decision
from inspection.errors import Conflict, InvalidInput
from inspection.models import DefectClass, Inspection, Part, Verdict
from inspection.services import verdict_record_final
from review.models import ReviewItem
from review.notifications import notify_review_item_added, notify_review_item_decided


def review_item_open(
    *, part: Part, inspection: Inspection | None, reason: str, model_version: str = ""
) -> tuple[ReviewItem, bool]:
    """The part's open review item, creating it if there is none. Idempotent per part.

    A new item is pushed to the project's reviewers after commit.
    """
    existing = ReviewItem.objects.filter(
        part=part, status__in=[ReviewItem.Status.OPEN, ReviewItem.Status.CLAIMED]
    ).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            item = ReviewItem.objects.create(
                project_id=part.project_id, part=part, inspection=inspection, reason=reason, model_version=model_version
            )
    except IntegrityError:
        # Another image of the same part opened it at the same moment.
        return ReviewItem.objects.get(part=part, status__in=[ReviewItem.Status.OPEN, ReviewItem.Status.CLAIMED]), False
    item_id = item.pk
    transaction.on_commit(lambda: notify_review_item_added(item_id=item_id), robust=True)
    return item, True


def review_decide(
    *,
    item: ReviewItem,
    reviewer: Any,
    outcome: str,
    defect_class_id: int | None = None,
    comment: str = "",
) -> Verdict:
    """Record a reviewer's decision: the part's final verdict plus its training labels.

    The caller has already checked that ``reviewer`` may review ``item``'s project
    (``access_review_item``). Deciding an item twice is a Conflict.
    """
    defect_class = None
    if defect_class_id is not None:
        defect_class = DefectClass.objects.filter(pk=defect_class_id, project_id=item.project_id).first()
        if defect_class is None:
            raise InvalidInput("Unknown defect class for this project.", code="unknown_defect_class")
    with transaction.atomic():
        locked = ReviewItem.objects.select_for_update().select_related("part").get(pk=item.pk)
        if locked.status == ReviewItem.Status.DECIDED:
            raise Conflict("This item has already been decided.", code="already_decided")
        if (
            locked.status == ReviewItem.Status.CLAIMED
            and locked.claimed_by_id not in (None, reviewer.pk)
            and locked.lease_expires_at is not None
            and locked.lease_expires_at > timezone.now()
        ):
            raise Conflict("Another reviewer holds this item.", code="claimed_by_other")
        verdict = verdict_record_final(
            part=locked.part,
            outcome=outcome,
            source=Verdict.Source.HUMAN,
            defect_class=defect_class,
            decided_by=reviewer,
            inspection=locked.inspection,
            model_version=locked.model_version,
        )
        annotation_record_review_decision(
            part=locked.part,
            review_item=locked,
            author=reviewer,
            outcome=outcome,
            defect_class=defect_class,
            comment=comment,
            model_version=locked.model_version,
        )
        locked.status = ReviewItem.Status.DECIDED
        locked.decided_by = reviewer
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "decided_by", "decided_at"])
        transaction.on_commit(lambda: notify_review_item_decided(item=locked), robust=True)
    return verdict
