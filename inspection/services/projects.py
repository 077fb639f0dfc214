"""Writes for projects, their stations and station tokens, and memberships."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from inspection.auth import TOKEN_PREFIX, hash_token
from inspection.errors import Conflict, Forbidden, InvalidInput
from inspection.models import (
    DefectClass,
    Line,
    Membership,
    Project,
    Role,
    Station,
    StationToken,
)
from inspection.services.audit import audit_record

logger = logging.getLogger(__name__)


# --- projects, lines, stations, people ---------------------------------------------------


def project_create(*, name: str, defect_classes: list[str], good_class_name: str = "good") -> Project:
    with transaction.atomic():
        project = Project.objects.create(name=name, good_class_name=good_class_name)
        palette = ["#e4572e", "#17bebb", "#ffc914", "#76b041", "#8e44ad", "#2e86de", "#f78fb3", "#596275"]
        for index, class_name in enumerate(defect_classes):
            DefectClass.objects.create(
                project=project, name=class_name, color=palette[index % len(palette)], hotkey=index + 1
            )
    return project


def station_create(*, project: Project, line_name: str, station_name: str) -> Station:
    with transaction.atomic():
        line, _ = Line.objects.get_or_create(project=project, name=line_name)
        station, _ = Station.objects.get_or_create(project=project, line=line, name=station_name)
    return station


# A keyword left out of ``station_set_region`` (distinct from None, which clears a region).
UNCHANGED: Any = object()
WHOLE_FRAME = {"x": 0.0, "y": 0.0, "width": 1.0, "height": 1.0}


def station_set_region(
    *, station: Station, region: Any = UNCHANGED, ignore_zones: Any = UNCHANGED, actor: Any = None
) -> Station:
    """Set what the models see of the station's frame: its inspection region (None: the
    whole frame) and its ignore zones (a list; [] for none); a keyword left out keeps its
    value. Parts inspected from now on are cut and blanked this way. Deployed models that
    learnt another view of this station send its parts to people until models trained on
    the new one serve (routing: ``region_changed``), or until their scores through the new
    view are calibrated on the station's decided parts (``routing.calibration_rescore_view``,
    queued here). Audited with both before and after."""
    from workers.ml.regions import parse_region, parse_zones, region_dict

    try:
        new_region = None if region is None or region is UNCHANGED else region_dict(parse_region(region))
    except ValueError as exc:
        raise InvalidInput(f"Bad inspection region: {exc}.", code="bad_region") from None
    if new_region == WHOLE_FRAME:
        new_region = None  # the whole frame is no region: one way to say it
    try:
        new_zones = [] if ignore_zones is UNCHANGED else [region_dict(z) for z in parse_zones(ignore_zones)]
    except ValueError as exc:
        raise InvalidInput(f"Bad ignore zones: {exc}.", code="bad_ignore_zones") from None
    with transaction.atomic():
        locked = Station.objects.select_for_update().get(pk=station.pk)
        before = {"inspection_region": locked.inspection_region, "ignore_zones": locked.ignore_zones}
        if region is not UNCHANGED:
            locked.inspection_region = new_region
        if ignore_zones is not UNCHANGED:
            locked.ignore_zones = new_zones
        after = {"inspection_region": locked.inspection_region, "ignore_zones": locked.ignore_zones}
        if before == after:
            return locked
        locked.save(update_fields=["inspection_region", "ignore_zones"])
        audit_record(
            project_id=locked.project_id,
            actor=actor,
            action="station.region_changed",
            subject=locked,
            before=before,
            after=after,
        )
        # The deployed models score the station's decided parts through the new view and get
        # thresholds of its own, so they decide its parts again before they are retrained.
        transaction.on_commit(lambda: _rescore_view(locked.pk))
    return locked


def _rescore_view(station_id: int) -> None:
    from inspection.tasks import calibration_rescore_view_task

    calibration_rescore_view_task.delay(station_id)


def station_token_issue(
    *, station: Station, label: str = "", ttl: timedelta | None = None, actor: Any = None
) -> tuple[StationToken, str]:
    """A new token for ``station``. The raw token is returned once and never stored."""
    prefix = secrets.token_hex(6)
    raw = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32).replace('_', '-')}"
    with transaction.atomic():  # no token without its audit row
        token = StationToken.objects.create(
            station=station,
            prefix=prefix,
            secret_sha256=hash_token(raw),
            label=label,
            expires_at=timezone.now() + ttl if ttl else None,
        )
        audit_record(
            project_id=station.project_id,
            actor=actor,
            action="station_token.issued",
            subject=token,
            after={"station": station.pk, "prefix": prefix, "expires_at": str(token.expires_at) if ttl else None},
        )
    return token, raw


def station_token_revoke(*, token: StationToken, actor: Any = None) -> None:
    with transaction.atomic():
        changed = StationToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if changed:
            audit_record(
                project_id=token.station.project_id,
                actor=actor,
                action="station_token.revoked",
                subject=token,
                after={"station": token.station_id, "prefix": token.prefix},
            )


def membership_set(*, project: Project, user: Any, role: str) -> Membership:
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}.")
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


def membership_change_role(*, membership: Membership, actor: Any, role: str) -> Membership:
    """An admin of the project changes someone else's role. Nobody changes their own."""
    if membership.user_id == actor.pk:
        raise Forbidden("You cannot change your own role.")
    actor_role = (
        Membership.objects.filter(project_id=membership.project_id, user=actor).values_list("role", flat=True).first()
    )
    if actor_role != Role.ADMIN:
        raise Forbidden("Only a project admin can change roles.")
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}.")
    with transaction.atomic():
        before = {"role": membership.role, "user": membership.user.username}
        Membership.objects.filter(pk=membership.pk).update(role=role)
        membership.refresh_from_db()
        audit_record(
            project_id=membership.project_id,
            actor=actor,
            action="membership.role_changed",
            subject=membership,
            before=before,
            after={"role": role, "user": membership.user.username},
        )
    return membership


def project_update(*, project: Project, actor: Any = None, **changes: Any) -> Project:
    """Managers change the name, description and decision thresholds of their project."""
    allowed = {
        "name", "description", "auto_pass_threshold", "auto_fail_threshold", "target_escape_rate",
        "target_false_reject_rate", "calibration_confidence", "audit_rate", "out_of_distribution_ratio",
        "drift_review", "views_per_part", "shifts", "time_zone", "labels_per_image", "training_labels",
        "image_retention_days", "retrain_after_labels", "promote_when_better",
    }  # fmt: skip
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(f"Cannot change {', '.join(sorted(unknown))}.")
    pass_at = changes.get("auto_pass_threshold", project.auto_pass_threshold)
    fail_at = changes.get("auto_fail_threshold", project.auto_fail_threshold)
    if pass_at > fail_at:
        raise InvalidInput("auto_pass_threshold must not exceed auto_fail_threshold.")
    before = {name: getattr(project, name) for name in changes}
    for name, value in changes.items():
        setattr(project, name, value)
    try:
        with transaction.atomic():
            project.save(update_fields=list(changes) or None)
            audit_record(
                project_id=project.pk,
                actor=actor,
                action="project.updated",
                subject=project,
                before=before,
                after=changes,
            )
            if {"shifts", "time_zone"} & set(changes):
                # The dashboards' day and shift rows are keyed by when each local day and
                # shift began: re-cut them.
                from inspection.services.rollups import rollups_rebuild_local

                rollups_rebuild_local(project=project)
            if set(changes) & {"target_escape_rate", "target_false_reject_rate", "calibration_confidence"}:
                # A new operating point: thresholds are refitted at once for the deployed models.
                from inspection.services.routing import routing_recalibrate

                routing_recalibrate(project_id=project.pk, actor=actor)
    except IntegrityError:
        raise Conflict("Another project already has this name.") from None
    return project


# --- defect classes (the taxonomy annotators label with) ---------------------------------


def defect_class_create(
    *, project: Project, actor: Any, name: str, color: str = "#e4572e", hotkey: int | None = None
) -> DefectClass:
    """A new class; its name is unique in the project and so is its hotkey (1-9) when set."""
    try:
        with transaction.atomic():
            defect_class = DefectClass.objects.create(project=project, name=name, color=color, hotkey=hotkey)
            audit_record(
                project_id=project.pk,
                actor=actor,
                action="defect_class.created",
                subject=defect_class,
                after={"name": name, "color": color, "hotkey": hotkey},
            )
    except IntegrityError:
        raise Conflict("Another defect class of this project has this name or hotkey.", code="duplicate") from None
    return defect_class


def defect_class_update(*, defect_class: DefectClass, actor: Any, **changes: Any) -> DefectClass:
    """Rename, recolour or re-key a class. Labels refer to it by id, so they follow."""
    unknown = set(changes) - {"name", "color", "hotkey"}
    if unknown:
        raise InvalidInput(f"Cannot change {', '.join(sorted(unknown))}.")
    before = {name: getattr(defect_class, name) for name in changes}
    for name, value in changes.items():
        setattr(defect_class, name, value)
    try:
        with transaction.atomic():
            defect_class.save(update_fields=list(changes) or None)
            audit_record(
                project_id=defect_class.project_id,
                actor=actor,
                action="defect_class.updated",
                subject=defect_class,
                before=before,
                after=changes,
            )
    except IntegrityError:
        raise Conflict("Another defect class of this project has this name or hotkey.", code="duplicate") from None
    return defect_class
