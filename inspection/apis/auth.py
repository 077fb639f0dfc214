"""Sign-in for people, and the health probe."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import login, logout
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from inspection import selectors
from inspection.models import (
    Membership,
)
from inspection.permissions import IsPerson
from inspection.serializers import (
    LoginInputSerializer,
)
from inspection.services.sign_in import sign_in_attempt

# --- auth ------------------------------------------------------------------------------


@method_decorator(ensure_csrf_cookie, name="get")
class CsrfApi(APIView):
    """Sets the CSRF cookie that every unsafe request by a person must echo in X-CSRFToken."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(responses={204: None})
    def get(self, request: Request) -> Response:
        return Response(status=status.HTTP_204_NO_CONTENT)


@method_decorator(csrf_protect, name="post")
class LoginApi(APIView):
    """Session login. CSRF-protected (login CSRF), throttled per address, and limited per
    account whatever the address (``inspection.services.sign_in``)."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(request=LoginInputSerializer, responses={200: None})
    def post(self, request: Request) -> Response:
        serializer = LoginInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = sign_in_attempt(request=request._request, **serializer.validated_data)
        if user is None:
            return Response(
                {"code": "invalid_credentials", "detail": "Wrong username or password."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        login(request._request, user)
        return Response(_me(user))


class LogoutApi(APIView):
    permission_classes = [IsPerson]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    permission_classes = [IsPerson]

    @extend_schema(responses={200: None})
    def get(self, request: Request) -> Response:
        return Response(_me(request.user))


def _me(user: Any) -> dict[str, Any]:
    memberships = Membership.objects.filter(user=user).select_related("project")
    return {
        "id": user.pk,
        "username": user.username,
        "projects": [{"id": m.project_id, "name": m.project.name, "role": m.role} for m in memberships],
    }


class HealthApi(APIView):
    """Liveness for load balancers and docker-compose: the database and Redis answer."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(responses={200: None, 503: None})
    def get(self, request: Request) -> Response:
        return Response(*selectors.health())
