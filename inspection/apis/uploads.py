"""Resumable uploads (tus-style: POST announces, PATCH appends at Upload-Offset, GET resumes)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors, services
from inspection.auth import station_of
from inspection.errors import InvalidInput
from inspection.models import (
    Upload,
)
from inspection.permissions import IsStation

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
