from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from inspection.models import (
    AuditEvent,
    DefectClass,
    Image,
    Inspection,
    Line,
    Membership,
    Part,
    Project,
    Station,
    StationToken,
    Verdict,
)

admin.site.register([Project, DefectClass, Line, Part, Image])


@admin.register(Station)
class StationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "project", "line", "name", "is_active", "inspection_region"]
    # Set only through the API or the settings page, which validate it and audit the change.
    readonly_fields = ["inspection_region"]


@admin.register(Inspection)
class InspectionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "project", "part", "station", "status", "received_at"]
    list_filter = ["status"]


@admin.register(Verdict)
class VerdictAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "part", "outcome", "defect_class", "source", "is_final", "created_at"]
    readonly_fields = [field.name for field in Verdict._meta.fields]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "user", "project", "role"]


@admin.register(StationToken)
class StationTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "station", "prefix", "label", "created_at", "expires_at", "revoked_at"]
    # The secret's hash is never editable or shown.
    exclude = ["secret_sha256"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only: the audit trail is never edited or deleted, not even by a superuser."""

    list_display = ["id", "created_at", "project", "actor_label", "action", "object_type", "object_id"]
    list_filter = ["action"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
