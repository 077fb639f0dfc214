"""Signed webhooks for final verdicts, with SSRF defences and a delivery log.

A webhook URL must resolve only to public addresses (no loopback, private, link-local,
metadata, multicast or reserved ranges), checked when it is saved and again right before
every delivery; the request then goes to the very address that was checked (DNS rebinding),
and redirects are never followed (a public URL that 302s inward). Plants whose MES sits on
a private network list those host names in ``LOUPE_WEBHOOK_ALLOWED_HOSTS``.

Delivery is at least once, never two attempts at a time: an attempt claims its delivery row
before it sends, and a reconciler queues again the pending deliveries whose broker message
was lost.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import requests
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from requests.adapters import HTTPAdapter

from inspection.errors import InvalidInput
from inspection.models import Project, Verdict, Webhook, WebhookDelivery
from inspection.services.audit import audit_record
from inspection.services.line_integration import verdict_message
from inspection.sql import quoted_column

SIGNATURE_HEADER = "X-Loupe-Signature"
TIMESTAMP_HEADER = "X-Loupe-Timestamp"
MAX_ATTEMPTS = 6
# An attempt that claimed its delivery and did not record an outcome within this time died with
# its worker. Longer than the delivery task's hard time limit (60 s), so a live attempt is
# never taken over.
ATTEMPT_LEASE = timedelta(seconds=120)
# How far past its due time a pending delivery must be before the reconciler queues it again:
# well past Celery's own retry, so only a lost message (or a queue this far behind) gets a second.
REQUEUE_GRACE = timedelta(minutes=5)


class WebhookRetry(Exception):
    """A delivery attempt failed in a way worth retrying; ``countdown`` is the backoff."""

    def __init__(self, message: str, countdown: int) -> None:
        super().__init__(message)
        self.countdown = countdown


def backoff_seconds(attempt: int) -> int:
    """10 s, 20 s, 40 s ... capped at 10 minutes (well under the broker's visibility timeout)."""
    return int(min(600, 10 * 2 ** max(0, attempt - 1)))


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _refused(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def resolve_public(url: str) -> tuple[str, list[str]]:
    """``(host, addresses)`` for a webhook URL, or InvalidInput saying why it is refused."""
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise InvalidInput("Webhook URL must be http:// or https:// with a host name.", code="webhook_url")
    host = parsed.hostname
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, ValueError):
        raise InvalidInput(f"Webhook host {host!r} does not resolve.", code="webhook_url") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if host not in settings.LOUPE_WEBHOOK_ALLOWED_HOSTS and any(_refused(a) for a in addresses):
        raise InvalidInput(
            f"Webhook host {host!r} resolves to a loopback, private, link-local or reserved address.",
            code="webhook_url_private",
        )
    return host, addresses


def webhook_create(*, project: Project, url: str, actor: Any = None) -> tuple[Webhook, str]:
    resolve_public(url)
    secret = secrets.token_hex(32)
    with transaction.atomic():
        webhook = Webhook.objects.create(
            project=project, url=url, secret=secret, created_by=actor if getattr(actor, "pk", None) else None
        )
        audit_record(project_id=project.pk, actor=actor, action="webhook.created", subject=webhook, after={"url": url})
    return webhook, secret


def webhook_deactivate(*, webhook: Webhook, actor: Any = None) -> Webhook:
    with transaction.atomic():
        Webhook.objects.filter(pk=webhook.pk).update(is_active=False)
        audit_record(project_id=webhook.project_id, actor=actor, action="webhook.deactivated", subject=webhook)
    webhook.refresh_from_db()
    return webhook


def webhook_deliveries_queue(*, verdict: Verdict) -> list[int]:
    """One pending delivery per active webhook of the verdict's project (inside its transaction);
    the ids of the deliveries created. Idempotent per (webhook, verdict)."""
    return webhook_deliveries_queue_many(verdicts=[verdict])


def webhook_deliveries_queue_many(*, verdicts: list[Verdict]) -> list[int]:
    """``webhook_deliveries_queue`` for verdicts of one or more projects. It runs for every
    verdict, so it is one statement: ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING``."""
    if not verdicts:
        return []
    quote = connection.ops.quote_name
    delivery = {name: quoted_column(WebhookDelivery, name) for name in
                ("webhook", "verdict", "status", "attempts", "error", "created_at")}  # fmt: skip
    hook = {name: quoted_column(Webhook, name) for name in ("id", "project", "is_active")}
    verdict_table, verdict_id = quote(Verdict._meta.db_table), quoted_column(Verdict, "id")
    sql = (
        f"INSERT INTO {quote(WebhookDelivery._meta.db_table)} ({', '.join(delivery.values())}) "  # noqa: S608  (names are ours, quoted)
        f"SELECT w.{hook['id']}, v.{verdict_id}, %s, 0, '', %s "
        f"FROM {quote(Webhook._meta.db_table)} w JOIN {verdict_table} v "
        f"ON v.{quoted_column(Verdict, 'project')} = w.{hook['project']} "
        f"WHERE w.{hook['is_active']} AND v.{verdict_id} IN ({', '.join(['%s'] * len(verdicts))}) "
        f"ON CONFLICT ({delivery['webhook']}, {delivery['verdict']}) DO NOTHING RETURNING id"
    )
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(sql, [WebhookDelivery.Status.PENDING.value, now, *(verdict.pk for verdict in verdicts)])
        created = [int(row[0]) for row in cursor.fetchall()]
    for delivery_id in created:
        transaction.on_commit(lambda d=delivery_id: _enqueue(d), robust=True)  # type: ignore[misc]
    return created


def _enqueue(delivery_id: int) -> None:
    from inspection.tasks import webhook_deliver_task

    webhook_deliver_task.delay(delivery_id)


class _PinnedHTTPSAdapter(HTTPAdapter):
    """Connects to a checked IP address while verifying TLS for the original host name."""

    def __init__(self, host: str) -> None:
        self._host = host
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._host
        kwargs["assert_hostname"] = self._host
        super().init_poolmanager(*args, **kwargs)


def _post_pinned(url: str, address: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment may re-route the request
        if parsed.scheme == "https":
            session.mount("https://", _PinnedHTTPSAdapter(parsed.hostname or ""))
        return session.post(
            parsed._replace(netloc=netloc).geturl(),
            data=body,
            headers={**headers, "Host": parsed.netloc.rsplit("@", 1)[-1]},
            timeout=(3, 10),
            allow_redirects=False,
        )


def _in_flight(now: datetime) -> Q:
    """Deliveries an attempt has claimed and not finished: the claim clears ``error`` and a
    failed attempt always records one (a delivered one leaves ``pending``)."""
    return Q(attempts__gt=0, error="", last_attempt_at__gte=now - ATTEMPT_LEASE)


def webhook_deliver(*, delivery_id: int) -> WebhookDelivery | None:
    """One attempt. Idempotent: a delivered or failed delivery is left alone, and so is one
    another attempt is sending right now (the attempt claims the row with a conditional update
    first, so a duplicate message never sends twice at once). Raises ``WebhookRetry`` (with its
    backoff) while attempts remain."""
    delivery = WebhookDelivery.objects.select_related("webhook", "verdict").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return delivery
    now = timezone.now()
    claimable = WebhookDelivery.objects.filter(
        pk=delivery.pk, status=WebhookDelivery.Status.PENDING, attempts=delivery.attempts
    ).exclude(_in_flight(now))
    attempts = delivery.attempts + 1
    if delivery.attempts >= MAX_ATTEMPTS:
        # Only the last attempt dying in flight leaves a row here (a finished one is failed).
        claimable.update(status=WebhookDelivery.Status.FAILED, error="the last attempt was interrupted")
        delivery.refresh_from_db()
        return delivery
    if not claimable.update(attempts=attempts, error="", last_attempt_at=now):
        delivery.refresh_from_db()  # another attempt is sending it, or got here first
        return delivery
    webhook = delivery.webhook
    verdict = Verdict.objects.select_related("part", "defect_class", "inspection").get(pk=delivery.verdict_id)
    body = json.dumps({"event": "verdict.final", "delivery": delivery.pk, **verdict_message(verdict)}).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Loupe-Webhook/1",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(webhook.secret, timestamp, body),
        "X-Loupe-Delivery": str(delivery.pk),
    }
    code: int | None = None
    try:
        _, addresses = resolve_public(webhook.url)
        response = _post_pinned(webhook.url, addresses[0], body, headers)
        code = response.status_code
        response.close()  # the body is never read, stored or echoed
        error = "" if 200 <= code < 300 else f"receiver answered HTTP {code}"
    except InvalidInput as refused:
        error = refused.detail
    except requests.RequestException as failure:
        error = f"request failed: {type(failure).__name__}"
    if not error:
        status = WebhookDelivery.Status.DELIVERED
    elif attempts >= MAX_ATTEMPTS:
        status = WebhookDelivery.Status.FAILED
    else:
        status = WebhookDelivery.Status.PENDING
    recorded = WebhookDelivery.objects.filter(
        pk=delivery.pk, status=WebhookDelivery.Status.PENDING, attempts=attempts
    ).update(
        status=status,
        response_code=code,
        error=error[:300],
        last_attempt_at=timezone.now(),
        delivered_at=timezone.now() if status == WebhookDelivery.Status.DELIVERED else None,
    )
    if not recorded:
        # This attempt outlived its lease and another took the delivery over: its outcome is not ours to record.
        delivery.refresh_from_db()
        return delivery
    if status == WebhookDelivery.Status.PENDING:
        raise WebhookRetry(error, countdown=backoff_seconds(attempts))
    delivery.refresh_from_db()
    return delivery


def webhook_deliveries_requeue_overdue(*, grace: timedelta = REQUEUE_GRACE, limit: int = 1000) -> list[int]:
    """Queue again the pending deliveries whose next attempt is more than ``grace`` overdue, and
    return their ids: their message was lost (Redis flushed or restarted empty, a worker killed
    while it held a retry, an attempt that died sending). Due means: created, for one never
    tried; the backoff after a failed attempt; the lease of an attempt that never finished.

    Idempotent, and safe beside a message that was only late: the attempt claims the row, so a
    delivery is never sent by two attempts at once nor again once delivered. Two messages for
    a delivery whose receiver keeps failing can spend its attempts faster than the backoff.
    """
    now = timezone.now()
    overdue = Q(attempts=0, created_at__lt=now - grace)
    for attempts in range(1, MAX_ATTEMPTS):
        retry_due = now - grace - timedelta(seconds=backoff_seconds(attempts))
        overdue |= Q(attempts=attempts, last_attempt_at__lt=retry_due) & ~Q(error="")
    overdue |= Q(attempts__gt=0, error="", last_attempt_at__lt=now - grace - ATTEMPT_LEASE)
    delivery_ids = list(
        WebhookDelivery.objects.filter(overdue, status=WebhookDelivery.Status.PENDING)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    for delivery_id in delivery_ids:
        _enqueue(delivery_id)
    return delivery_ids
