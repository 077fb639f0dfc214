"""The image pyramid of an inspection's image, for smooth zoom in the studio. Same access
as ``/inspections/{id}/image``: the caller's projects, or a station's own posts."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import tiles
from annotation.serializers import TileDescriptorOutputSerializer
from inspection import selectors
from inspection.errors import NotFound
from inspection.models import Inspection
from inspection.permissions import IsPersonOrStation
from inspection.services.retention import image_require_stored


def _inspection(request: Request, pk: int) -> Inspection:
    inspection = selectors.inspections_for(user=request.user).filter(pk=pk).first()
    if inspection is None:
        raise NotFound("Inspection not found.")
    image_require_stored(inspection.image)
    return inspection


class InspectionTilesApi(APIView):
    permission_classes = [IsPersonOrStation]

    @extend_schema(responses=TileDescriptorOutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(tiles.descriptor(_inspection(request, pk).image))


class InspectionTileApi(APIView):
    """One JPEG tile: ``level`` 0 is full resolution, each next level halves; ``col``/``row``
    count tiles of ``tile_size`` from the top left."""

    permission_classes = [IsPersonOrStation]

    @extend_schema(operation_id="v1_inspections_tile_retrieve", responses={(200, "image/jpeg"): bytes})
    def get(self, request: Request, pk: int, level: int, col: int, row: int) -> HttpResponse:
        content = tiles.tile_bytes(_inspection(request, pk).image, level=level, col=col, row=row)
        response = HttpResponse(content, content_type="image/jpeg")
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        # Tiles of an image never change (the key is its SHA-256); private: access is per user.
        response["Cache-Control"] = "private, max-age=86400"
        return response
