"""Claims on inspections for a model run: which task runs which part, in batches.

An inference task is queued per part, but a worker that finds other parts of the project
waiting claims up to ``companions`` of them with its own and runs them together: the routing
writes of the batch then share one transaction and a handful of bulk statements instead of a
dozen statements per part. The batch is whatever is waiting at that moment, so an idle line
runs parts one at a time with no added latency, and a backlog drains in bigger, cheaper
batches. A claimed part's own task later finds it taken and returns at once.

A claim is a lease: the row is ``running``, led by the claiming task's inspection, until
``lease_expires_at``. A task whose worker dies leaves its claims to expire; its own message
comes back (``acks_late``) and reclaims its inspection at once, and the reconciler queues
the others again once their lease has expired. A redelivered inspection (``deliveries`` > 1:
a worker may have died on it) runs alone, so one poison image cannot take others down with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from inspection.models import Inspection
from inspection.sql import quoted_column


@dataclass(frozen=True)
class Claim:
    leader: int  # the inspection whose task holds the claim
    inspection_ids: list[int]  # the leader first, then its companions, oldest first


# A part picked up this soon after it arrived found no queue: it runs alone, without the
# statement that looks for others. Past it, parts are queueing and a batch pays.
QUEUEING_AFTER = timedelta(milliseconds=25)


def lease_length() -> timedelta:
    # Longer than the task's hard time limit, so that a live run never loses its claim.
    return timedelta(seconds=settings.LOUPE_INFERENCE_LEASE_SECONDS)


def run_claim(*, inspection_id: int, companions: int = 0) -> Claim | None:
    """Claim ``inspection_id`` for a run, and, if it waited in the queue (``QUEUEING_AFTER``),
    up to ``companions`` other pending inspections of its project. None when it is done,
    failed, gone or leased to another run. Committed before any model runs, so that
    ``deliveries`` counts a run its worker did not survive."""
    table = connection.ops.quote_name(Inspection._meta.db_table)
    column = {name: quoted_column(Inspection, name) for name in
              ("id", "status", "deliveries", "run_leader", "lease_expires_at", "project", "received_at")}  # fmt: skip
    now = timezone.now()
    until = connection.ops.adapt_datetimefield_value(now + lease_length())
    moment = connection.ops.adapt_datetimefield_value(now)
    running, pending = Inspection.Status.RUNNING.value, Inspection.Status.PENDING.value
    claim_set = (
        f"SET {column['deliveries']} = {column['deliveries']} + 1, {column['status']} = %s, "
        f"{column['run_leader']} = %s, {column['lease_expires_at']} = %s"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        # The leader: pending, or running under its own lease (its message came back after
        # the worker died), an expired lease, or none at all (claimed before leases existed).
        cursor.execute(
            f"UPDATE {table} {claim_set} WHERE {column['id']} = %s AND ({column['status']} = %s OR "
            f"({column['status']} = %s AND ({column['run_leader']} IS NULL OR {column['run_leader']} = %s "
            f"OR {column['lease_expires_at']} IS NULL OR {column['lease_expires_at']} < %s))) "
            f"RETURNING {column['deliveries']}, {column['project']}, {column['received_at']}",
            [running, inspection_id, until, inspection_id, pending, running, inspection_id, moment],
        )
        row = cursor.fetchone()
        if row is None:
            return None
        deliveries, project_id = int(row[0]), int(row[1])
        received_at = row[2] if isinstance(row[2], datetime) else parse_datetime(str(row[2]))
        if received_at is not None and timezone.is_naive(received_at):
            received_at = timezone.make_aware(received_at, UTC)
        waited = received_at is None or now - received_at >= QUEUEING_AFTER
        if companions <= 0 or deliveries > 1 or not waited:
            return Claim(leader=inspection_id, inspection_ids=[inspection_id])
        # Others waiting in the project, oldest first; rows another batch is claiming right
        # now are skipped, not waited for (SQLite has one writer at a time anyway).
        skip_locked = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
        cursor.execute(
            f"UPDATE {table} {claim_set} WHERE {column['id']} IN ("  # noqa: S608  (names are ours, quoted)
            f"SELECT {column['id']} FROM {table} WHERE {column['project']} = %s AND {column['status']} = %s "
            f"AND {column['id']} <> %s ORDER BY {column['id']} LIMIT %s{skip_locked}) "
            f"RETURNING {column['id']}",
            [running, inspection_id, until, project_id, pending, inspection_id, companions],
        )
        others = sorted(int(found[0]) for found in cursor.fetchall())
    return Claim(leader=inspection_id, inspection_ids=[inspection_id, *others])


def leases_expired(
    *, now: datetime | None = None, limit: int = 1000, requeued_before: datetime | None = None
) -> list[int]:
    """Running inspections whose lease has expired: their run died (the reconciler queues
    them again), leaving out those it queued again since ``requeued_before``."""
    moment = now or timezone.now()
    rows = Inspection.objects.filter(status=Inspection.Status.RUNNING, lease_expires_at__lt=moment)
    if requeued_before is not None:
        rows = rows.filter(Q(requeued_at__isnull=True) | Q(requeued_at__lt=requeued_before))
    return list(rows.order_by("lease_expires_at").values_list("pk", flat=True)[:limit])
