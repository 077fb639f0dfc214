"""The audit trail: an append-only record of who changed what, when, from what to what."""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models

from inspection.models.projects import Project


class AuditImmutableError(Exception):
    """Raised on any attempt to change or delete an audit row."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AuditImmutableError("Audit events are append-only.")

    def delete(self) -> NoReturn:
        raise AuditImmutableError("Audit events are append-only.")


class AuditEvent(models.Model):
    """One audited action. Rows are inserted and never updated or deleted: the ORM refuses,
    and on PostgreSQL a trigger refuses at the database too (migration 0005)."""

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="audit_events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True)
    actor_label = models.CharField(max_length=150)  # username, "station:<id>", "model:<version>", "system"
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "created_at"]), models.Index(fields=["project", "action"])]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditImmutableError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AuditImmutableError("Audit events are append-only.")
