"""Writes to the audit trail. Call inside the transaction of the change it records."""

from __future__ import annotations

from typing import Any

from django.db import models

from inspection.auth import StationPrincipal
from inspection.models import AuditEvent


def actor_label(actor: Any) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, StationPrincipal):
        return f"station:{actor.station.pk}"
    if isinstance(actor, str):
        return actor
    return str(getattr(actor, "username", "") or "system")


def audit_record(
    *,
    project_id: int,
    actor: Any,
    action: str,
    subject: models.Model,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event: who (``actor``: a user, a station, a label such as ``"model:classifier:3"``,
    or None for the system) did ``action`` to ``subject``, with the values before and after."""
    event = audit_event(project_id=project_id, actor=actor, action=action, subject=subject, before=before, after=after)
    event.save(force_insert=True)
    return event


def audit_event(
    *,
    project_id: int,
    actor: Any,
    action: str,
    subject: models.Model,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """The unsaved event ``audit_record`` appends; for writers that append many in one
    ``bulk_create`` (the inference worker's batch of verdicts)."""
    return AuditEvent(
        project_id=project_id,
        actor=actor if getattr(actor, "pk", None) and not isinstance(actor, StationPrincipal) else None,
        actor_label=actor_label(actor)[:150],
        action=action,
        object_type=subject._meta.label_lower,
        object_id=str(subject.pk),
        before=before or {},
        after=after or {},
    )
