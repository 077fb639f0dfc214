"""Stations and their tokens (project admins)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors, services
from inspection.errors import NotFound
from inspection.filters import ScopedFilterSet
from inspection.models import (
    Station,
    StationToken,
)
from inspection.permissions import CAN_ADMINISTER, CAN_MANAGE, IsPerson
from inspection.serializers import (
    StationCreateInputSerializer,
    StationOutputSerializer,
    StationTokenCreateInputSerializer,
    StationTokenOutputSerializer,
    StationUpdateInputSerializer,
)

# --- stations and their tokens (project admins) ------------------------------------------


class StationFilter(ScopedFilterSet):
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


class StationDetailApi(APIView):
    """GET: one station. PATCH (project admins): its inspection region, the part of the
    camera's frame the models look at (null: the whole frame); audited."""

    permission_classes = [IsPerson]

    def _station(self, request: Request, pk: int) -> Station:
        station = selectors.stations_for(user=request.user).filter(pk=pk).first()
        if station is None:
            raise NotFound("Station not found.")
        return station

    @extend_schema(responses={200: StationOutputSerializer})
    def get(self, request: Request, pk: int) -> Response:
        return Response(StationOutputSerializer(self._station(request, pk)).data)

    @extend_schema(request=StationUpdateInputSerializer, responses={200: StationOutputSerializer})
    def patch(self, request: Request, pk: int) -> Response:
        station = self._station(request, pk)
        selectors.access_project(user=request.user, project_id=station.project_id, roles=CAN_ADMINISTER)
        serializer = StationUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        station = services.station_set_region(
            station=station,
            region=fields.get("inspection_region", services.UNCHANGED),
            ignore_zones=fields.get("ignore_zones", services.UNCHANGED),
            actor=request.user,
        )
        return Response(StationOutputSerializer(station).data)


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


class StationTokenFilter(ScopedFilterSet):
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


class StationDriftBaselineApi(APIView):
    """POST (project managers): accept the station's parts from now on as its new normal; drift
    is measured against the first parts after this and its open drift alerts close (audited)."""

    permission_classes = [IsPerson]

    @extend_schema(request=None, responses={200: None})
    def post(self, request: Request, pk: int) -> Response:
        from inspection.services.drift import station_drift_rebaseline

        station = selectors.stations_for(user=request.user).filter(pk=pk).first()
        if station is None:
            raise NotFound("Station not found.")
        selectors.access_project(user=request.user, project_id=station.project_id, roles=CAN_MANAGE)
        station = station_drift_rebaseline(station=station, actor=request.user)
        return Response({"station": station.pk, "drift_baseline_at": station.drift_baseline_at})
