"""Writes for final verdicts: a part routed once its views are in, its one final verdict recorded
(singly or in bulk from the models), and the verdict published to the line."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inspection.errors import Conflict, InvalidInput
from inspection.models import AuditEvent, DefectClass, Inspection, Part, Verdict
from inspection.services import routing
from inspection.services.audit import audit_event, audit_record
from inspection.services.rollups import rollup_record_verdict, rollup_record_verdicts
from inspection.sql import insert_many_unless_exists, insert_unless_exists

logger = logging.getLogger(__name__)


def _enqueue_publish(verdict_id: int) -> None:
    from inspection.tasks import verdict_publish_task

    if settings.MQTT_URL:
        verdict_publish_task.delay(verdict_id)


def _publish_now(verdicts: Sequence[Verdict]) -> None:
    """Publish from this process right after the commit (an inference worker: its MQTT
    connection is open and everything the messages need is loaded), a batch's verdicts in one
    go. Those the broker does not acknowledge in time go to the publish task, which retries
    with backoff."""
    from inspection.services.line_integration import verdicts_publish_loaded

    if not settings.MQTT_URL:
        return
    for verdict in verdicts_publish_loaded(verdicts):
        logger.warning("verdict %s: MQTT publish not acknowledged; queued for retry", verdict.pk)
        _enqueue_publish(verdict.pk)


@dataclass(frozen=True)
class ModelVerdict:
    """A final verdict the models reached for a single-camera part, to be recorded in bulk."""

    inspection: Inspection
    outcome: str
    defect_class: DefectClass | None


def verdicts_record_final_from_models(model_verdicts: list[ModelVerdict]) -> list[Verdict]:
    """``verdict_record_final_unless_decided`` for a batch of model verdicts (one project, one
    per part), inside the caller's transaction: one multi-row ``INSERT ... ON CONFLICT DO
    NOTHING``, one audit ``bulk_create``, one rollup upsert per table and one webhook statement
    for the whole batch. Parts decided already keep their verdict. Each verdict is published
    to MQTT from this process after the commit."""
    if not model_verdicts:
        return []
    now = timezone.now()
    rows = [
        {
            "project_id": item.inspection.project_id,
            "part_id": item.inspection.part_id,
            "outcome": item.outcome,
            "defect_class_id": item.defect_class.pk if item.defect_class else None,
            "source": Verdict.Source.MODEL.value,
            "decided_by_id": None,
            "inspection_id": item.inspection.pk,
            "model_version": item.inspection.model_version,
            "is_final": True,
            "created_at": now,
        }
        for item in model_verdicts
    ]
    created = insert_many_unless_exists(Verdict, rows=rows, unique=["part"], unique_where="is_final")
    verdicts = []
    for item, values, verdict_id in zip(model_verdicts, rows, created, strict=True):
        if verdict_id is None:
            continue  # a repeat post, or a person faster than the models: the part keeps its verdict
        verdict = Verdict(pk=verdict_id, **values)
        verdict.part, verdict.defect_class, verdict.inspection = (
            item.inspection.part,
            item.defect_class,
            item.inspection,
        )
        verdicts.append(verdict)
    if not verdicts:
        return []
    AuditEvent.objects.bulk_create(
        [
            audit_event(
                project_id=verdict.project_id,
                actor=f"model:{verdict.model_version}",
                action="verdict.recorded",
                subject=verdict,
                after={
                    "part": verdict.part.serial,
                    "outcome": verdict.outcome,
                    "defect_class": verdict.defect_class.name if verdict.defect_class else None,
                    "source": verdict.source,
                    "model_version": verdict.model_version,
                    "inspection": verdict.inspection_id,
                },
            )
            for verdict in verdicts
        ]
    )
    rollup_record_verdicts(verdicts=[(verdict, "") for verdict in verdicts])
    from inspection.services.webhooks import webhook_deliveries_queue_many

    webhook_deliveries_queue_many(verdicts=verdicts)

    transaction.on_commit(lambda: _publish_now(verdicts), robust=True)
    return verdicts


def _route_part(
    inspection: Inspection, *, deployed: bool, model_version: str, model_verdicts: list[ModelVerdict] | None = None
) -> None:
    """Decide the part once all its views are in. Runs inside inspection_run's transaction.
    With ``model_verdicts`` (single-camera parts), a verdict the models reach is appended
    there for the caller to record in bulk instead of being recorded here."""
    from review.models import ReviewItem
    from review.services import review_item_open

    part, project = inspection.part, inspection.project

    def decided() -> bool:
        return Verdict.objects.filter(part=part, is_final=True).exists()

    if not deployed:
        # Cold start: no deployed model yet, so every part goes to a person.
        if not decided():
            review_item_open(part=part, inspection=inspection, reason=ReviewItem.Reason.COLD_START, sampled=True)
        return
    if project.views_per_part <= 1:
        views = [inspection.scores]  # one camera: nothing to wait for, nothing to read
    else:
        views = list(
            Inspection.objects.filter(part=part, status=Inspection.Status.DONE, model_version=model_version)
            .order_by("id")
            .values_list("scores", flat=True)
        )
    if len(views) < project.views_per_part or (project.views_per_part > 1 and decided()):
        return  # wait for the other cameras; or a late view of a part decided already
    decisions = [routing.Decision(**scores["decision"]) for scores in views if "decision" in scores]
    # Drawn at random, or every part goes to people under the project's thresholds: either way
    # this part comes to people whatever its scores, a fair one to fit them on.
    sampled = routing.sample_draw(project=project) or any(view.held == "project" for view in decisions)
    decision = routing.audit_draw(decision=routing.decide_part(decisions), sampled=sampled)
    if decision.action == "review":
        if decided():
            return
        item, created = review_item_open(
            part=part, inspection=inspection, reason=decision.reason, model_version=model_version, sampled=sampled
        )
        if created and decision.reason == ReviewItem.Reason.AUDIT_SAMPLE:
            would = "fail" if decision.defect_class is not None or _would_fail(decisions) else "pass"
            ReviewItem.objects.filter(pk=item.pk).update(model_decision=would)
        return
    defect_class = None
    if decision.action == "fail" and decision.defect_class:
        defect_class = DefectClass.objects.filter(project=project, name=decision.defect_class).first()
    outcome = Verdict.Outcome.FAIL if decision.action == "fail" else Verdict.Outcome.PASS
    if model_verdicts is not None:
        model_verdicts.append(ModelVerdict(inspection=inspection, outcome=outcome, defect_class=defect_class))
        return
    # A part decided already (a repeat post, a person faster than the models) keeps its verdict.
    verdict_record_final_unless_decided(
        part=part,
        outcome=outcome,
        source=Verdict.Source.MODEL,
        defect_class=defect_class,
        inspection=inspection,
        model_version=model_version,
        publish_now=True,
    )


def _would_fail(decisions: list[Any]) -> bool:
    return any(decision.action == "fail" for decision in decisions)


def verdict_record_final(
    *,
    part: Part,
    outcome: str,
    source: str,
    defect_class: DefectClass | None = None,
    decided_by: Any = None,
    inspection: Inspection | None = None,
    model_version: str = "",
    audited_model_decision: str = "",
    publish_now: bool = False,
) -> Verdict:
    """The part's one final verdict. A second final verdict for the same part is a Conflict.

    Counted in the dashboards' rollups in the same transaction. ``audited_model_decision``
    is what the models would have decided ("pass"/"fail") when a person decides an audit
    sample: it makes the verdict an escape or a false reject, or confirms the models.
    ``publish_now``: publish to MQTT from this process after the commit (inference workers,
    with ``inspection`` and its station loaded) instead of queueing the publish task.
    """
    verdict = verdict_record_final_unless_decided(
        part=part,
        outcome=outcome,
        source=source,
        defect_class=defect_class,
        decided_by=decided_by,
        inspection=inspection,
        model_version=model_version,
        audited_model_decision=audited_model_decision,
        publish_now=publish_now,
    )
    if verdict is None:
        raise Conflict("This part already has a final verdict.", code="already_decided")
    return verdict


def verdict_record_final_unless_decided(
    *,
    part: Part,
    outcome: str,
    source: str,
    defect_class: DefectClass | None = None,
    decided_by: Any = None,
    inspection: Inspection | None = None,
    model_version: str = "",
    audited_model_decision: str = "",
    publish_now: bool = False,
) -> Verdict | None:
    """``verdict_record_final``, answering None (and writing nothing) when the part already
    has a final verdict. Cost on the inference hot path: one ``INSERT ... ON CONFLICT DO
    NOTHING`` against the one-final-verdict index (no read first, no savepoint), the audit
    row, the rollup upserts and a read of the project's webhooks."""
    if outcome == Verdict.Outcome.FAIL and source == Verdict.Source.HUMAN and defect_class is None:
        raise InvalidInput("A failed part needs a defect class.", code="defect_class_required")
    if outcome == Verdict.Outcome.PASS and defect_class is not None:
        raise InvalidInput("A passed part has no defect class.", code="defect_class_not_allowed")
    if defect_class is not None and defect_class.project_id != part.project_id:
        raise InvalidInput("Unknown defect class for this project.", code="unknown_defect_class")
    values = {
        "project_id": part.project_id,
        "part_id": part.pk,
        "outcome": outcome,
        "defect_class_id": defect_class.pk if defect_class else None,
        "source": source,
        "decided_by_id": getattr(decided_by, "pk", None),
        "inspection_id": inspection.pk if inspection else None,
        "model_version": model_version,
        "is_final": True,
        "created_at": timezone.now(),
    }
    # No savepoint: nothing in here is expected to fail, and a conflict is not an error.
    with transaction.atomic(savepoint=False):
        verdict_id = insert_unless_exists(Verdict, values=values, unique=["part"], unique_where="is_final")
        if verdict_id is None:
            return None
        verdict = Verdict(pk=verdict_id, **values)
        verdict.part, verdict.defect_class, verdict.inspection = part, defect_class, inspection
        if decided_by is not None:
            verdict.decided_by = decided_by
        audit_record(
            project_id=part.project_id,
            actor=decided_by or f"model:{model_version}",
            action="verdict.recorded",
            subject=verdict,
            after={
                "part": part.serial,
                "outcome": outcome,
                "defect_class": defect_class.name if defect_class else None,
                "source": source,
                "model_version": model_version,
                "inspection": inspection.pk if inspection else None,
            },
        )
        rollup_record_verdict(verdict=verdict, audited_model_decision=audited_model_decision)
        if publish_now:
            transaction.on_commit(lambda: _publish_now([verdict]), robust=True)
        else:
            transaction.on_commit(lambda: _enqueue_publish(verdict_id), robust=True)
        from inspection.services.webhooks import webhook_deliveries_queue

        webhook_deliveries_queue(verdict=verdict)
        return verdict
