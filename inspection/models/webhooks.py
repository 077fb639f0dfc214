"""Outbound webhooks: where final verdicts are POSTed, and the log of every delivery."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from inspection.models.parts import Verdict
from inspection.models.projects import Project


class Webhook(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    # HMAC-SHA256 key; shown once at creation, kept to sign every delivery.
    secret = models.CharField(max_length=64)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    verdict = models.ForeignKey(Verdict, on_delete=models.CASCADE, related_name="webhook_deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # Why the last attempt failed, in Loupe's words: never the receiver's response body.
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["webhook", "verdict"], name="webhook_delivery_once_per_verdict"),
        ]
        # The reconciler's minutely scan reads only the few pending rows, not the delivery log.
        indexes = [
            models.Index(fields=["id"], condition=models.Q(status="pending"), name="webhook_delivery_pending"),
        ]
