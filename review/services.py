"""Writes for review items: open, claim (leases), release, decide."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from annotation.services import annotation_record_review_decision
from annotation.shapes import validate_shapes
from inspection.errors import Conflict, InvalidInput
from inspection.models import DefectClass, Inspection, Part, Verdict
from inspection.services import verdict_record_final
from inspection.services.audit import audit_record
from review.models import GoldenPart, ReviewItem
from review.notifications import (
    notify_review_item_added,
    notify_review_item_claimed,
    notify_review_item_decided,
    notify_review_item_released,
)

_rng = random.Random()  # noqa: S311  (golden draws need no cryptographic strength)


def review_item_open(
    *, part: Part, inspection: Inspection | None, reason: str, model_version: str = "", sampled: bool = False
) -> tuple[ReviewItem, bool]:
    """The part's open review item, creating it if there is none. Idempotent per part.
    ``sampled``: the part came to people whatever its scores (``ReviewItem.sampled``).

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
                project_id=part.project_id,
                part=part,
                inspection=inspection,
                reason=reason,
                model_version=model_version,
                sampled=sampled,
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
    shapes: list[Any] | None = None,
) -> Verdict | None:
    """Record a reviewer's decision: the part's final verdict plus its training labels.

    The caller has already checked that ``reviewer`` may review ``item``'s project
    (``access_review_item``). Deciding an item twice is a Conflict. A golden item only
    scores the reviewer (returns None): the part's verdict and training data stay as they are.
    """
    defect_class = None
    if defect_class_id is not None:
        defect_class = DefectClass.objects.filter(pk=defect_class_id, project_id=item.project_id).first()
        if defect_class is None:
            raise InvalidInput("Unknown defect class for this project.", code="unknown_defect_class")
    clean_shapes: list[dict[str, Any]] = []
    if shapes:
        if item.inspection is None:
            raise InvalidInput("This item has no image to draw on.", code="invalid_shape")
        image = item.inspection.image
        clean_shapes = validate_shapes(shapes, width=image.width, height=image.height)
    with transaction.atomic():
        locked = ReviewItem.objects.select_for_update(of=("self",)).select_related("part", "inspection").get(pk=item.pk)
        if locked.status == ReviewItem.Status.DECIDED:
            raise Conflict("This item has already been decided.", code="already_decided")
        if (
            locked.status == ReviewItem.Status.CLAIMED
            and locked.claimed_by_id not in (None, reviewer.pk)
            and locked.lease_expires_at is not None
            and locked.lease_expires_at > timezone.now()
        ):
            raise Conflict("Another reviewer holds this item.", code="claimed_by_other")
        if locked.golden_id is not None:
            _golden_answer(locked, reviewer=reviewer, outcome=outcome, defect_class=defect_class)
            return None
        verdict = verdict_record_final(
            part=locked.part,
            outcome=outcome,
            source=Verdict.Source.HUMAN,
            defect_class=defect_class,
            decided_by=reviewer,
            inspection=locked.inspection,
            model_version=locked.model_version,
            audited_model_decision=locked.model_decision if locked.reason == ReviewItem.Reason.AUDIT_SAMPLE else "",
        )
        annotation_record_review_decision(
            part=locked.part,
            review_item=locked,
            author=reviewer,
            outcome=outcome,
            defect_class=defect_class,
            comment=comment,
            model_version=locked.model_version,
            shapes_on=(locked.inspection.image_id, clean_shapes) if locked.inspection and clean_shapes else None,
        )
        locked.status = ReviewItem.Status.DECIDED
        locked.decided_by = reviewer
        locked.decided_at = timezone.now()
        locked.decided_outcome = outcome
        locked.save(update_fields=["status", "decided_by", "decided_at", "decided_outcome"])
        transaction.on_commit(lambda: notify_review_item_decided(item=locked), robust=True)
    return verdict


def _golden_answer(item: ReviewItem, *, reviewer: Any, outcome: str, defect_class: DefectClass | None) -> None:
    golden = GoldenPart.objects.get(pk=item.golden_id or 0)
    correct = outcome == golden.outcome and (outcome == "pass" or defect_class == golden.defect_class)
    item.status = ReviewItem.Status.DECIDED
    item.decided_by, item.decided_at, item.decided_outcome = reviewer, timezone.now(), outcome
    item.golden_correct = correct
    item.save(update_fields=["status", "decided_by", "decided_at", "decided_outcome", "golden_correct"])
    audit_record(
        project_id=item.project_id,
        actor=reviewer,
        action="review.golden_answered",
        subject=item,
        after={"outcome": outcome, "defect_class": defect_class.name if defect_class else None, "correct": correct},
    )
    transaction.on_commit(lambda: notify_review_item_decided(item=item), robust=True)


def golden_mark(*, part: Part, outcome: str, defect_class_id: int | None, actor: Any = None) -> GoldenPart:
    """A manager fixes the right answer for ``part``; it will be shown to reviewers as a test."""
    defect_class = None
    if outcome not in {"pass", "fail"}:
        raise InvalidInput("Outcome must be pass or fail.")
    if outcome == "fail":
        defect_class = DefectClass.objects.filter(pk=defect_class_id or 0, project_id=part.project_id).first()
        if defect_class is None:
            raise InvalidInput(
                "A failing golden part needs a defect class of its project.", code="unknown_defect_class"
            )
    elif defect_class_id is not None:
        raise InvalidInput("A passing golden part has no defect class.", code="defect_class_not_allowed")
    with transaction.atomic():
        golden, _ = GoldenPart.objects.update_or_create(
            part=part,
            defaults={"project_id": part.project_id, "outcome": outcome, "defect_class": defect_class,
                      "is_active": True, "created_by": actor if getattr(actor, "pk", None) else None},
        )  # fmt: skip
        audit_record(
            project_id=part.project_id,
            actor=actor,
            action="golden.marked",
            subject=golden,
            after={
                "part": part.serial,
                "outcome": outcome,
                "defect_class": defect_class.name if defect_class else None,
            },
        )
    return golden


def _golden_for(*, reviewer: Any, project_ids: list[int], rng: random.Random) -> ReviewItem | None:
    """Maybe a golden item, leased to ``reviewer``: drawn at the project's ``golden_rate``,
    never a part this reviewer already answered as golden or holds as one right now."""
    answered = ReviewItem.objects.filter(
        Q(decided_by=reviewer) | Q(claimed_by=reviewer, status=ReviewItem.Status.CLAIMED), golden__isnull=False
    ).values_list("golden_id", flat=True)
    candidates = list(
        GoldenPart.objects.filter(project_id__in=project_ids, is_active=True)
        .exclude(pk__in=answered)
        .select_related("project")
    )
    if not candidates:
        return None
    golden = rng.choice(candidates)
    if rng.random() >= golden.project.golden_rate:
        return None
    lease = timedelta(seconds=settings.LOUPE_REVIEW_LEASE_SECONDS)
    # Disguised as the part's first routing (else as an audit): the reviewer must not know.
    first = ReviewItem.objects.filter(part_id=golden.part_id, golden__isnull=True).order_by("id").first()
    return ReviewItem.objects.create(
        project_id=golden.project_id,
        part_id=golden.part_id,
        inspection=Inspection.objects.filter(part_id=golden.part_id).order_by("id").first(),
        golden=golden,
        reason=ReviewItem.Reason.GOLDEN,
        shown_reason=first.reason if first is not None else ReviewItem.Reason.AUDIT_SAMPLE,
        model_version=first.model_version if first is not None else "",
        status=ReviewItem.Status.CLAIMED,
        claimed_by=reviewer,
        lease_expires_at=timezone.now() + lease,
    )


def _available() -> Q:
    """Open, or claimed by someone whose lease ran out."""
    return Q(status=ReviewItem.Status.OPEN) | Q(status=ReviewItem.Status.CLAIMED, lease_expires_at__lt=timezone.now())


def review_claim_next(
    *,
    reviewer: Any,
    project_ids: list[int],
    rng: random.Random | None = None,
    exclude_ids: Sequence[int] = (),
) -> ReviewItem | None:
    """Lease the oldest available item of ``project_ids`` to ``reviewer``, or None.

    Two reviewers never hold the same item: the row is locked (PostgreSQL skips rows another
    transaction is claiming; SQLite serialises writers), and availability is re-checked under
    the lock. A reviewer who already holds a live lease gets that item back, renewed, unless
    it is in ``exclude_ids``: the console keeps a decided item claimed for a few seconds (so
    the decision can be undone) while the reviewer moves on to the next one.
    """
    lease = timedelta(seconds=settings.LOUPE_REVIEW_LEASE_SECONDS)
    with transaction.atomic():
        mine = (
            ReviewItem.objects.select_for_update()
            .filter(
                project_id__in=project_ids,
                status=ReviewItem.Status.CLAIMED,
                claimed_by=reviewer,
                lease_expires_at__gte=timezone.now(),
            )
            .exclude(pk__in=list(exclude_ids))
            .first()
        )
        if mine is None:
            golden = _golden_for(reviewer=reviewer, project_ids=project_ids, rng=rng or _rng)
            if golden is not None:
                return golden
        item = mine or (
            ReviewItem.objects.select_for_update(skip_locked=True)
            .filter(_available(), project_id__in=project_ids)
            .exclude(pk__in=list(exclude_ids))
            .order_by("created_at", "id")
            .first()
        )
        if item is None:
            return None
        item.status = ReviewItem.Status.CLAIMED
        item.claimed_by = reviewer
        item.lease_expires_at = timezone.now() + lease
        item.save(update_fields=["status", "claimed_by", "lease_expires_at"])
        transaction.on_commit(lambda: notify_review_item_claimed(item=item), robust=True)
    return item


def review_release(*, item: ReviewItem, reviewer: Any) -> ReviewItem:
    """Give a claimed item back to the queue (skip, or end of shift)."""
    with transaction.atomic():
        locked = ReviewItem.objects.select_for_update().get(pk=item.pk)
        if locked.status != ReviewItem.Status.CLAIMED or locked.claimed_by_id != reviewer.pk:
            raise Conflict("You do not hold this item.", code="not_claimed_by_you")
        locked.status, locked.claimed_by, locked.lease_expires_at = ReviewItem.Status.OPEN, None, None
        locked.save(update_fields=["status", "claimed_by", "lease_expires_at"])
        item_id = locked.pk
        transaction.on_commit(lambda: notify_review_item_released(item_id=item_id), robust=True)
    return locked


def review_leases_expire() -> int:
    """Return items whose lease ran out to the queue and tell every screen. Idempotent."""
    with transaction.atomic():
        expired = list(
            ReviewItem.objects.select_for_update(skip_locked=True).filter(
                status=ReviewItem.Status.CLAIMED, lease_expires_at__lt=timezone.now()
            )
        )
        for item in expired:
            item.status, item.claimed_by, item.lease_expires_at = ReviewItem.Status.OPEN, None, None
            item.save(update_fields=["status", "claimed_by", "lease_expires_at"])
            item_id = item.pk
            transaction.on_commit(lambda i=item_id: notify_review_item_released(item_id=i), robust=True)  # type: ignore[misc]
    return len(expired)
