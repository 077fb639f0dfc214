"""HTTP API for stations and people: parse, call one service or selector, render."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from typing import Any

import django_filters
from django.contrib.auth import authenticate, login, logout
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.parsers import BaseParser, FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from inspection import selectors, services
from inspection.auth import station_of
from inspection.errors import Conflict, Forbidden, InvalidInput, NotFound
from inspection.models import (
    AuditEvent,
    Calibration,
    DefectClass,
    Inspection,
    Membership,
    ModelVersion,
    Part,
    Project,
    Station,
    StationToken,
    Upload,
    Verdict,
    Webhook,
    WebhookDelivery,
)
from inspection.permissions import CAN_ADMINISTER, CAN_MANAGE, IsPerson, IsPersonOrStation, IsStation
from inspection.serializers import (
    AuditEventOutputSerializer,
    CalibrationOutputSerializer,
    DefectClassOutputSerializer,
    InspectionCreateInputSerializer,
    InspectionOutputSerializer,
    LoginInputSerializer,
    MembershipOutputSerializer,
    MembershipUpdateInputSerializer,
    ModelVersionOutputSerializer,
    PartOutputSerializer,
    ProjectOutputSerializer,
    ProjectUpdateInputSerializer,
    StationCreateInputSerializer,
    StationOutputSerializer,
    StationTokenCreateInputSerializer,
    StationTokenOutputSerializer,
    TrainingStartInputSerializer,
    VerdictOutputSerializer,
    WebhookCreateInputSerializer,
    WebhookDeliveryOutputSerializer,
    WebhookOutputSerializer,
)
from inspection.services.model_versions import (
    model_version_deploy,
    model_version_retire,
    training_cancel,
    training_start,
)
from inspection.services.routing import deployed_label, routing_recalibrate
from inspection.services.webhooks import webhook_create, webhook_deactivate

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
    """Session login. CSRF-protected (login CSRF) and throttled."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(request=LoginInputSerializer, responses={200: None})
    def post(self, request: Request) -> Response:
        serializer = LoginInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request._request, **serializer.validated_data)
        if user is None or not user.is_active:
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


# --- projects --------------------------------------------------------------------------


class ProjectListApi(generics.ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = ProjectOutputSerializer
    ordering_fields = ["id", "name"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[Project]:
        return selectors.projects_for(user=self.request.user)


class ProjectDetailApi(generics.RetrieveAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = ProjectOutputSerializer

    def get_queryset(self) -> QuerySet[Project]:
        return selectors.projects_for(user=self.request.user)

    @extend_schema(request=ProjectUpdateInputSerializer, responses=ProjectOutputSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        project = selectors.access_project(user=request.user, project_id=pk, roles=CAN_MANAGE)
        serializer = ProjectUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = services.project_update(project=project, actor=request.user, **serializer.validated_data)
        return Response(ProjectOutputSerializer(selectors.projects_for(user=request.user).get(pk=project.pk)).data)


class DefectClassFilter(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
    class Meta:
        model = DefectClass
        fields = ["project"]


class DefectClassListApi(generics.ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = DefectClassOutputSerializer
    filterset_class = DefectClassFilter
    ordering_fields = ["id", "name"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[DefectClass]:
        return selectors.defect_classes_for(user=self.request.user)


# --- inspections -----------------------------------------------------------------------


class InspectionFilter(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Inspection
        fields = ["project", "station", "status", "part"]


class InspectionListApi(generics.ListAPIView):  # type: ignore[type-arg]
    """GET: inspections the caller may see. POST (stations): submit a part image."""

    permission_classes = [IsPersonOrStation]
    serializer_class = InspectionOutputSerializer
    filterset_class = InspectionFilter
    ordering_fields = ["id", "received_at", "captured_at"]
    ordering = ["-id"]
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[Inspection]:
        return selectors.inspections_for(user=self.request.user)

    def get_permissions(self) -> Any:
        if self.request.method == "POST":
            return [IsStation()]
        return super().get_permissions()

    @extend_schema(
        request={"multipart/form-data": InspectionCreateInputSerializer},
        responses={202: InspectionOutputSerializer, 200: InspectionOutputSerializer},
        description=(
            "Submit one image of a part. Answers 202 with the inspection; a repeat with the same "
            "Idempotency-Key header (or idempotency_key field), or the same image of the same part, "
            "answers 200 with the first inspection and queues nothing."
        ),
    )
    def post(self, request: Request) -> Response:
        station = station_of(request)
        assert station is not None  # IsStation
        serializer = InspectionCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        if "station" in fields and fields["station"] != station.pk:
            raise Forbidden("This token may only post for its own station.", code="wrong_station")
        header_key = request.headers.get("Idempotency-Key")
        if header_key and fields.get("idempotency_key") and header_key != fields["idempotency_key"]:
            raise InvalidInput("Idempotency-Key header and idempotency_key field differ.")
        if header_key and (
            len(header_key) > 128
            or not header_key.replace("-", "").replace("_", "").replace(".", "").replace(":", "").isalnum()
        ):
            raise InvalidInput("Idempotency-Key must be at most 128 letters, digits, '-', '_', '.' or ':'.")
        metadata = {
            "part_serial": fields["part_serial"],
            "sku": fields["sku"],
            "lot": fields["lot"],
            "captured_at": fields.get("captured_at"),
            "idempotency_key": header_key or fields.get("idempotency_key"),
        }
        if "upload" in fields:
            upload = selectors.access_upload(station=station, upload_id=fields["upload"])
            result = services.inspection_submit_upload(upload=upload, **metadata)
        else:
            result = services.inspection_submit(station=station, image_file=fields["image"], **metadata)
        inspection = selectors.inspections_for(user=request.user).get(pk=result.inspection.pk)
        return Response(
            InspectionOutputSerializer(inspection).data,
            status=status.HTTP_202_ACCEPTED if result.created else status.HTTP_200_OK,
        )


class InspectionDetailApi(generics.RetrieveAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPersonOrStation]
    serializer_class = InspectionOutputSerializer

    def get_queryset(self) -> QuerySet[Inspection]:
        return selectors.inspections_for(user=self.request.user)


class InspectionImageApi(APIView):
    """The stored (normalised) image bytes. Always an image content type, never sniffable."""

    permission_classes = [IsPersonOrStation]

    @extend_schema(responses={(200, "image/*"): bytes})
    def get(self, request: Request, pk: int) -> FileResponse:
        inspection = selectors.inspections_for(user=request.user).filter(pk=pk).first()
        if inspection is None:
            raise NotFound("Inspection not found.")
        image = inspection.image
        response = FileResponse(default_storage.open(image.file, "rb"), content_type=image.content_type)
        response["Content-Disposition"] = (
            f'inline; filename="inspection-{inspection.pk}.{image.file.rsplit(".", 1)[-1]}"'
        )
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cache-Control"] = "private, max-age=3600"
        return response


# --- resumable uploads (tus-style: POST announces, PATCH appends at Upload-Offset, GET resumes)


class ChunkParser(BaseParser):
    media_type = "application/offset+octet-stream"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return stream.read() if stream is not None else b""


def _upload_headers(upload: Upload) -> dict[str, str]:
    return {"Upload-Offset": str(upload.offset), "Upload-Length": str(upload.length), "Cache-Control": "no-store"}


def _header_int(request: Request, name: str) -> int:
    raw = request.headers.get(name, "")
    if not raw.isdigit():
        raise InvalidInput(f"{name} header must be a non-negative integer.")
    return int(raw)


class UploadListApi(APIView):
    permission_classes = [IsStation]

    @extend_schema(request=None, responses={201: None})
    def post(self, request: Request) -> Response:
        station = station_of(request)
        assert station is not None  # IsStation
        upload = services.upload_create(station=station, length=_header_int(request, "Upload-Length"))
        location = reverse("upload-detail", kwargs={"pk": upload.pk})
        body = {"id": str(upload.pk), "offset": upload.offset, "length": upload.length}
        return Response(body, status=status.HTTP_201_CREATED, headers={**_upload_headers(upload), "Location": location})


class UploadDetailApi(APIView):
    permission_classes = [IsStation]
    parser_classes = [ChunkParser]

    @extend_schema(responses={200: None})
    def get(self, request: Request, pk: str) -> Response:
        station = station_of(request)
        assert station is not None
        upload = selectors.access_upload(station=station, upload_id=pk)
        body = {"id": str(upload.pk), "offset": upload.offset, "length": upload.length}
        return Response(body, headers=_upload_headers(upload))

    @extend_schema(request={"application/offset+octet-stream": bytes}, responses={204: None})
    def patch(self, request: Request, pk: str) -> Response:
        station = station_of(request)
        assert station is not None
        upload = selectors.access_upload(station=station, upload_id=pk)
        offset = _header_int(request, "Upload-Offset")
        chunk = request.data if isinstance(request.data, bytes) else b""
        upload = services.upload_append(upload=upload, offset=offset, chunk=chunk)
        return Response(status=status.HTTP_204_NO_CONTENT, headers=_upload_headers(upload))


# --- parts, verdicts, memberships --------------------------------------------------------


class PartFilter(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
    class Meta:
        model = Part
        fields = ["project", "serial", "sku", "lot"]


class PartListApi(generics.ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = PartOutputSerializer
    filterset_class = PartFilter
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]

    def get_queryset(self) -> QuerySet[Part]:
        return selectors.parts_for(user=self.request.user)


class PartDetailApi(generics.RetrieveAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = PartOutputSerializer

    def get_queryset(self) -> QuerySet[Part]:
        return selectors.parts_for(user=self.request.user)


class VerdictFilter(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
    class Meta:
        model = Verdict
        fields = ["project", "part", "outcome", "source"]


class VerdictListApi(generics.ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = VerdictOutputSerializer
    filterset_class = VerdictFilter
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]

    def get_queryset(self) -> QuerySet[Verdict]:
        return selectors.verdicts_for(user=self.request.user)


class VerdictDetailApi(generics.RetrieveAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = VerdictOutputSerializer

    def get_queryset(self) -> QuerySet[Verdict]:
        return selectors.verdicts_for(user=self.request.user)


class MembershipFilter(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
    class Meta:
        model = Membership
        fields = ["project"]


class MembershipListApi(generics.ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = MembershipOutputSerializer
    filterset_class = MembershipFilter
    ordering_fields = ["id"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[Membership]:
        return selectors.memberships_for(user=self.request.user)


class MembershipDetailApi(generics.RetrieveAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = MembershipOutputSerializer

    def get_queryset(self) -> QuerySet[Membership]:
        return selectors.memberships_for(user=self.request.user)

    @extend_schema(request=MembershipUpdateInputSerializer, responses=MembershipOutputSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        membership = self.get_object()
        serializer = MembershipUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.membership_change_role(
            membership=membership, actor=request.user, role=serializer.validated_data["role"]
        )
        return Response(MembershipOutputSerializer(membership).data)


class HealthApi(APIView):
    """Liveness for load balancers and docker-compose: the database and Redis answer."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(responses={200: None, 503: None})
    def get(self, request: Request) -> Response:
        return Response(*selectors.health())


# --- stations and their tokens (project admins) ------------------------------------------


class StationFilter(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
    class Meta:
        model = Station
        fields = ["project"]


class StationListApi(generics.ListAPIView):  # type: ignore[type-arg]
    """GET: the stations of the caller's projects. POST (project admins): add a station."""

    permission_classes = [IsPerson]
    serializer_class = StationOutputSerializer
    filterset_class = StationFilter
    ordering_fields = ["id"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[Station]:
        return selectors.stations_for(user=self.request.user)

    @extend_schema(request=StationCreateInputSerializer, responses={201: StationOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = StationCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        project = selectors.access_project(user=request.user, project_id=fields["project"], roles=CAN_ADMINISTER)
        station = services.station_create(project=project, line_name=fields["line"], station_name=fields["name"])
        return Response(StationOutputSerializer(station).data, status=status.HTTP_201_CREATED)


class StationTokenIssueApi(APIView):
    """Issue a token for a station. The token is in this response only; Loupe keeps a hash."""

    permission_classes = [IsPerson]

    @extend_schema(request=StationTokenCreateInputSerializer, responses={201: None})
    def post(self, request: Request, pk: int) -> Response:
        station = selectors.stations_for(user=request.user).filter(pk=pk).first()
        if station is None:
            raise NotFound("Station not found.")
        selectors.access_project(user=request.user, project_id=station.project_id, roles=CAN_ADMINISTER)
        serializer = StationTokenCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ttl_days = serializer.validated_data.get("ttl_days")
        token, raw = services.station_token_issue(
            station=station,
            label=serializer.validated_data["description"],
            ttl=timedelta(days=ttl_days) if ttl_days else None,
            actor=request.user,
        )
        return Response(
            {**StationTokenOutputSerializer(token).data, "token": raw},
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class StationTokenFilter(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
    class Meta:
        model = StationToken
        fields = ["station"]


class StationTokenListApi(generics.ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = StationTokenOutputSerializer
    filterset_class = StationTokenFilter
    ordering_fields = ["id"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[StationToken]:
        return selectors.station_tokens_for(user=self.request.user)


class StationTokenRevokeApi(APIView):
    permission_classes = [IsPerson]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, pk: int) -> Response:
        token = selectors.station_tokens_for(user=request.user).filter(pk=pk).first()
        if token is None:
            raise NotFound("Station token not found.")
        services.station_token_revoke(token=token, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- model registry and training ---------------------------------------------------------


class ModelVersionFilter(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
    class Meta:
        model = ModelVersion
        fields = ["project", "kind", "status"]


class ModelVersionListApi(generics.ListAPIView):  # type: ignore[type-arg]
    """GET: model versions of the caller's projects. POST (managers): start a training job."""

    permission_classes = [IsPerson]
    serializer_class = ModelVersionOutputSerializer
    filterset_class = ModelVersionFilter
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]
    parser_classes = [JSONParser]

    def get_queryset(self) -> QuerySet[ModelVersion]:
        return selectors.model_versions_for(user=self.request.user)

    @extend_schema(request=TrainingStartInputSerializer, responses={202: ModelVersionOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = TrainingStartInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        project = selectors.access_project(user=request.user, project_id=fields["project"], roles=CAN_MANAGE)
        version = training_start(
            project=project, kind=fields["kind"], author=request.user, hyperparameters=fields["hyperparameters"]
        )
        return Response(ModelVersionOutputSerializer(version).data, status=status.HTTP_202_ACCEPTED)


class ModelVersionDetailApi(generics.RetrieveAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = ModelVersionOutputSerializer

    def get_queryset(self) -> QuerySet[ModelVersion]:
        return selectors.model_versions_for(user=self.request.user)


class ModelVersionActionApi(APIView):
    """POST .../cancel, .../deploy, .../retire (managers). Every change is a state transition."""

    permission_classes = [IsPerson]
    transitions = {"cancel": training_cancel, "deploy": model_version_deploy, "retire": model_version_retire}

    @extend_schema(
        operation_id="model_versions_transition", request=None, responses={200: ModelVersionOutputSerializer}
    )
    def post(self, request: Request, pk: int, action: str) -> Response:
        if action not in self.transitions:
            raise NotFound(f"Unknown action {action!r}: use cancel, deploy or retire.")
        version = selectors.access_model_version(user=request.user, version_id=pk, roles=CAN_MANAGE)
        version = self.transitions[action](version=version, actor=request.user)
        return Response(ModelVersionOutputSerializer(version).data)


class InspectionOverlayApi(APIView):
    """The anomaly heatmap or defect mask the models drew for an inspection, as a PNG."""

    permission_classes = [IsPersonOrStation]
    overlay = "heatmap"

    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request: Request, pk: int) -> FileResponse:
        inspection = selectors.inspections_for(user=request.user).filter(pk=pk).first()
        key = getattr(inspection, f"{self.overlay}_file", "") if inspection else ""
        if inspection is None or not key:
            raise NotFound(f"No {self.overlay} for this inspection.")
        response = FileResponse(default_storage.open(key, "rb"), content_type="image/png")
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return response


# --- audit trail (read and export only: there is no write, edit or delete endpoint) -------


class AuditEventFilter(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["project", "action", "object_type"]


class AuditEventListApi(generics.ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = AuditEventOutputSerializer
    filterset_class = AuditEventFilter
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return selectors.audit_events_for(user=self.request.user)


_CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    # A cell a spreadsheet would evaluate as a formula is made inert (CSV injection).
    return "'" + text if text.startswith(_CSV_FORMULA_PREFIXES) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


class AuditEventExportApi(generics.ListAPIView):  # type: ignore[type-arg]
    """The filtered audit trail as CSV, streamed in chunks (never the whole table in memory)."""

    permission_classes = [IsPerson]
    serializer_class = AuditEventOutputSerializer
    filterset_class = AuditEventFilter
    ordering_fields = ["id"]
    ordering = ["id"]
    pagination_class = None

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return selectors.audit_events_for(user=self.request.user)

    @extend_schema(responses={(200, "text/csv"): bytes})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> StreamingHttpResponse:  # type: ignore[override]
        rows = self.filter_queryset(self.get_queryset()).order_by("id")
        columns = [
            "id",
            "created_at",
            "project",
            "actor_label",
            "action",
            "object_type",
            "object_id",
            "before",
            "after",
        ]
        writer = csv.writer(_Echo())

        def lines() -> Any:
            yield writer.writerow(columns)
            for event in rows.iterator(chunk_size=2000):
                yield writer.writerow(
                    [_csv_cell(getattr(event, "project_id" if c == "project" else c)) for c in columns]
                )

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="loupe-audit.csv"'
        return response


# --- webhooks (project admins) -------------------------------------------------------------


class WebhookListApi(generics.ListAPIView):  # type: ignore[type-arg]
    """GET: the webhooks of projects the caller administers. POST: add one (secret shown once)."""

    permission_classes = [IsPerson]
    serializer_class = WebhookOutputSerializer
    ordering_fields = ["id"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[Webhook]:
        return selectors.webhooks_for(user=self.request.user)

    @extend_schema(request=WebhookCreateInputSerializer, responses={201: WebhookOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = WebhookCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        project = selectors.access_project(user=request.user, project_id=fields["project"], roles=CAN_ADMINISTER)
        webhook, secret = webhook_create(project=project, url=fields["url"], actor=request.user)
        return Response(
            {**WebhookOutputSerializer(webhook).data, "secret": secret},
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class WebhookDeactivateApi(APIView):
    permission_classes = [IsPerson]

    @extend_schema(request=None, responses={200: WebhookOutputSerializer})
    def post(self, request: Request, pk: int) -> Response:
        webhook = selectors.webhooks_for(user=request.user).filter(pk=pk).first()
        if webhook is None:
            raise NotFound("Webhook not found.")
        return Response(WebhookOutputSerializer(webhook_deactivate(webhook=webhook, actor=request.user)).data)


class WebhookDeliveryFilter(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
    class Meta:
        model = WebhookDelivery
        fields = ["webhook", "status"]


class WebhookDeliveryListApi(generics.ListAPIView):  # type: ignore[type-arg]
    """The delivery log: every attempt's outcome, never the receiver's response body."""

    permission_classes = [IsPerson]
    serializer_class = WebhookDeliveryOutputSerializer
    filterset_class = WebhookDeliveryFilter
    ordering_fields = ["id"]
    ordering = ["-id"]

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        return selectors.webhook_deliveries_for(user=self.request.user)


class WebhookDeliveryDetailApi(generics.RetrieveAPIView):  # type: ignore[type-arg]
    permission_classes = [IsPerson]
    serializer_class = WebhookDeliveryOutputSerializer

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        return selectors.webhook_deliveries_for(user=self.request.user)


class ProjectRoutingApi(APIView):
    """The manager's trade-off for the deployed models: the workload/escape curve measured on
    human-labelled parts and the operating point in force. Set it by PATCHing the project's
    ``target_escape_rate`` (audited; thresholds are refitted at once)."""

    permission_classes = [IsPerson]

    @extend_schema(responses={200: None})
    def get(self, request: Request, pk: int) -> Response:
        project = selectors.access_project(user=request.user, project_id=pk)
        label = deployed_label(project=project)
        calibration = Calibration.objects.filter(project=project, model_version=label).order_by("-id").first()
        return Response(
            {
                "project": project.pk,
                "deployed": label or None,
                "operating_point": {
                    "target_escape_rate": project.target_escape_rate,
                    "target_false_reject_rate": project.target_false_reject_rate,
                    "confidence": project.calibration_confidence,
                    "audit_rate": project.audit_rate,
                },
                "calibration": CalibrationOutputSerializer(calibration).data if calibration else None,
                "human_labels_since_deployment": selectors.human_labels_since_deployment(project=project),
            }
        )


class ProjectRecalibrateApi(APIView):
    permission_classes = [IsPerson]

    @extend_schema(request=None, responses={200: CalibrationOutputSerializer})
    def post(self, request: Request, pk: int) -> Response:
        project = selectors.access_project(user=request.user, project_id=pk, roles=CAN_MANAGE)
        calibration = routing_recalibrate(project_id=project.pk, actor=request.user)
        if calibration is None:
            raise Conflict("No model is deployed for this project.", code="nothing_deployed")
        return Response(CalibrationOutputSerializer(calibration).data)
