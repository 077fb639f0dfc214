"""HTTP API views, split by aggregate. ``loupe.urls`` and ``inspection.urls`` import from here."""

from inspection.apis.audit import (
    AuditEventExportApi,
    AuditEventListApi,
)
from inspection.apis.auth import (
    CsrfApi,
    HealthApi,
    LoginApi,
    LogoutApi,
    MeApi,
)
from inspection.apis.dashboards import (
    DashboardAuditsApi,
    DashboardAutomationApi,
    DashboardParetoApi,
    DashboardSummaryApi,
    DashboardThroughputApi,
    DashboardYieldApi,
)
from inspection.apis.inspections import (
    InspectionDetailApi,
    InspectionImageApi,
    InspectionListApi,
    InspectionOverlayApi,
    PartDetailApi,
    PartListApi,
    VerdictDetailApi,
    VerdictListApi,
)
from inspection.apis.model_versions import (
    ModelVersionActionApi,
    ModelVersionDetailApi,
    ModelVersionListApi,
)
from inspection.apis.projects import (
    DefectClassDetailApi,
    DefectClassListApi,
    MembershipDetailApi,
    MembershipListApi,
    ProjectDetailApi,
    ProjectDriftApi,
    ProjectListApi,
    ProjectRecalibrateApi,
    ProjectRoutingApi,
)
from inspection.apis.stations import (
    StationDetailApi,
    StationDriftBaselineApi,
    StationListApi,
    StationTokenIssueApi,
    StationTokenListApi,
    StationTokenRevokeApi,
)
from inspection.apis.uploads import (
    UploadDetailApi,
    UploadListApi,
)
from inspection.apis.webhooks import (
    WebhookDeactivateApi,
    WebhookDeliveryDetailApi,
    WebhookDeliveryListApi,
    WebhookListApi,
)

__all__ = [
    "AuditEventExportApi",
    "AuditEventListApi",
    "CsrfApi",
    "DashboardAuditsApi",
    "DashboardAutomationApi",
    "DashboardParetoApi",
    "DashboardSummaryApi",
    "DashboardThroughputApi",
    "DashboardYieldApi",
    "DefectClassDetailApi",
    "DefectClassListApi",
    "HealthApi",
    "InspectionDetailApi",
    "InspectionImageApi",
    "InspectionListApi",
    "InspectionOverlayApi",
    "LoginApi",
    "LogoutApi",
    "MeApi",
    "MembershipDetailApi",
    "MembershipListApi",
    "ModelVersionActionApi",
    "ModelVersionDetailApi",
    "ModelVersionListApi",
    "PartDetailApi",
    "PartListApi",
    "ProjectDetailApi",
    "ProjectDriftApi",
    "ProjectListApi",
    "ProjectRecalibrateApi",
    "ProjectRoutingApi",
    "StationDetailApi",
    "StationDriftBaselineApi",
    "StationListApi",
    "StationTokenIssueApi",
    "StationTokenListApi",
    "StationTokenRevokeApi",
    "UploadDetailApi",
    "UploadListApi",
    "VerdictDetailApi",
    "VerdictListApi",
    "WebhookDeactivateApi",
    "WebhookDeliveryDetailApi",
    "WebhookDeliveryListApi",
    "WebhookListApi",
]
