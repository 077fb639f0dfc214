"""Projects, their defect classes, members and routing operating point."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors, services
from inspection.errors import Conflict
from inspection.filters import ScopedFilterSet
from inspection.models import (
    Calibration,
    DefectClass,
    Membership,
    Project,
)
from inspection.permissions import CAN_MANAGE, IsPerson
from inspection.serializers import (
    CalibrationOutputSerializer,
    DefectClassCreateInputSerializer,
    DefectClassOutputSerializer,
    DefectClassUpdateInputSerializer,
    MembershipOutputSerializer,
    MembershipUpdateInputSerializer,
    ProjectOutputSerializer,
    ProjectUpdateInputSerializer,
)
from inspection.services.routing import deployed_label, routing_recalibrate

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


class DefectClassFilter(ScopedFilterSet):
    class Meta:
        model = DefectClass
        fields = ["project"]


class DefectClassListApi(generics.ListAPIView):  # type: ignore[type-arg]
    """GET: the classes of the caller's projects. POST (managers): add a class to a project."""

    permission_classes = [IsPerson]
    serializer_class = DefectClassOutputSerializer
    filterset_class = DefectClassFilter
    ordering_fields = ["id", "name"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[DefectClass]:
        return selectors.defect_classes_for(user=self.request.user)

    @extend_schema(request=DefectClassCreateInputSerializer, responses={201: DefectClassOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = DefectClassCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        project = selectors.access_project(user=request.user, project_id=fields.pop("project"), roles=CAN_MANAGE)
        defect_class = services.defect_class_create(project=project, actor=request.user, **fields)
        return Response(DefectClassOutputSerializer(defect_class).data, status=status.HTTP_201_CREATED)


class DefectClassDetailApi(generics.RetrieveAPIView):  # type: ignore[type-arg]
    """GET: one class. PATCH (managers): its name, color or hotkey; audited."""

    permission_classes = [IsPerson]
    serializer_class = DefectClassOutputSerializer

    def get_queryset(self) -> QuerySet[DefectClass]:
        return selectors.defect_classes_for(user=self.request.user)

    @extend_schema(request=DefectClassUpdateInputSerializer, responses=DefectClassOutputSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        defect_class = self.get_object()
        selectors.access_project(user=request.user, project_id=defect_class.project_id, roles=CAN_MANAGE)
        serializer = DefectClassUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        defect_class = services.defect_class_update(
            defect_class=defect_class, actor=request.user, **serializer.validated_data
        )
        return Response(DefectClassOutputSerializer(defect_class).data)


class MembershipFilter(ScopedFilterSet):
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


class ProjectRoutingApi(APIView):
    """The manager's trade-off for the deployed models: the workload/escape curve measured on
    human-labelled parts and the operating point in force. Set it by PATCHing the project's
    ``target_escape_rate`` (audited; thresholds are refitted at once)."""

    permission_classes = [IsPerson]

    @extend_schema(responses={200: None})
    def get(self, request: Request, pk: int) -> Response:
        project = selectors.access_project(user=request.user, project_id=pk)
        label = deployed_label(project=project)
        calibration = (
            Calibration.objects.filter(project=project, model_version=label, station__isnull=True)
            .order_by("-id")
            .first()
        )
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
                # Stations seen through a view the deployed models were not trained on, each
                # with the thresholds fitted for that view (null: its parts go to people).
                "stations_on_new_views": [
                    {"station": station.pk, "line": station.line.name, "name": station.name, **state}
                    for station, state in selectors.stations_on_unlearnt_views(project=project)
                ],
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


class ProjectDriftApi(APIView):
    """Drift since deployment (managers): per active station, its first parts scored by the
    deployed models (the reference) against its latest ones, per watched signal: PSI, KS
    statistic and p-value, level (stable, watch, drift; too_few_parts while a window is short),
    both windows' histograms on one scale; and the open drift alerts."""

    permission_classes = [IsPerson]

    @extend_schema(responses={200: None})
    def get(self, request: Request, pk: int) -> Response:
        project = selectors.access_project(user=request.user, project_id=pk, roles=CAN_MANAGE)
        return Response(selectors.project_drift(project=project))
