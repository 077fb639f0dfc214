"""Who may do what in a project. Roles are per project (Membership)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from inspection.auth import StationPrincipal
from inspection.models import Role

# What each role may do; checked by selectors (``access_*``) and services.
CAN_VIEW = frozenset({Role.ANNOTATOR, Role.REVIEWER, Role.MANAGER, Role.ADMIN})
CAN_REVIEW = frozenset({Role.REVIEWER, Role.MANAGER, Role.ADMIN})
CAN_MANAGE = frozenset({Role.MANAGER, Role.ADMIN})
CAN_ADMINISTER = frozenset({Role.ADMIN})


class IsStation(BasePermission):
    message = "Only a station token may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, StationPrincipal)


class IsPerson(BasePermission):
    message = "A signed-in person is required."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and not isinstance(user, StationPrincipal) and user.is_active)


class IsPersonOrStation(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return IsStation().has_permission(request, view) or IsPerson().has_permission(request, view)
