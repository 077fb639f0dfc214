"""Part images posted by stations, what the models drew on them, parts and verdicts."""

from __future__ import annotations

from typing import Any

import django_filters
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse, HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors, services
from inspection.auth import station_of
from inspection.errors import Forbidden, InvalidInput, NotFound
from inspection.filters import ScopedFilterSet
from inspection.imaging import overlay_png
from inspection.models import (
    Inspection,
    Part,
    Verdict,
)
from inspection.permissions import IsPerson, IsPersonOrStation, IsStation
from inspection.serializers import (
    InspectionCreateInputSerializer,
    InspectionOutputSerializer,
    PartOutputSerializer,
    VerdictOutputSerializer,
)
from inspection.services.retention import image_require_stored

# --- inspections -----------------------------------------------------------------------


class InspectionFilter(ScopedFilterSet):
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
        inspection = result.inspection
        if not result.complete:
            inspection = selectors.inspections_for(user=request.user).get(pk=inspection.pk)
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
        image_require_stored(image)
        response = FileResponse(default_storage.open(image.file, "rb"), content_type=image.content_type)
        response["Content-Disposition"] = (
            f'inline; filename="inspection-{inspection.pk}.{image.file.rsplit(".", 1)[-1]}"'
        )
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cache-Control"] = "private, max-age=3600"
        return response


class InspectionOverlayApi(APIView):
    """The anomaly heatmap or defect mask the models drew for an inspection, as a PNG: the
    stored 8-bit values, or with ``?render=overlay`` coloured with transparency to lay over the
    part (heatmap: inferno, opacity rising with the score; mask: red where defective)."""

    permission_classes = [IsPersonOrStation]
    overlay = "heatmap"

    @extend_schema(
        parameters=[OpenApiParameter("render", str, enum=["raw", "overlay"])],
        responses={(200, "image/png"): bytes},
    )
    def get(self, request: Request, pk: int) -> HttpResponse | FileResponse:
        render = request.query_params.get("render", "raw")
        if render not in ("raw", "overlay") or set(request.query_params) - {"render"}:
            raise InvalidInput("The only parameter is render=raw|overlay.", code="invalid_parameter")
        inspection = selectors.inspections_for(user=request.user).filter(pk=pk).first()
        key = getattr(inspection, f"{self.overlay}_file", "") if inspection else ""
        if inspection is None or not key:
            raise NotFound(f"No {self.overlay} for this inspection.")
        if render == "overlay":
            return _png_response(overlay_png(key, kind=self.overlay))
        response = FileResponse(default_storage.open(key, "rb"), content_type="image/png")
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return response


def _png_response(content: bytes) -> HttpResponse:
    response = HttpResponse(content, content_type="image/png")
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


# --- parts, verdicts, memberships --------------------------------------------------------


class PartFilter(ScopedFilterSet):
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


class VerdictFilter(ScopedFilterSet):
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
