from django.urls import path

from inspection import apis

urlpatterns = [
    path("health", apis.HealthApi.as_view(), name="health"),
    path("auth/csrf", apis.CsrfApi.as_view(), name="auth-csrf"),
    path("auth/login", apis.LoginApi.as_view(), name="auth-login"),
    path("auth/logout", apis.LogoutApi.as_view(), name="auth-logout"),
    path("auth/me", apis.MeApi.as_view(), name="auth-me"),
    path("projects", apis.ProjectListApi.as_view(), name="project-list"),
    path("projects/<int:pk>", apis.ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<int:pk>/routing", apis.ProjectRoutingApi.as_view(), name="project-routing"),
    path("projects/<int:pk>/recalibrate", apis.ProjectRecalibrateApi.as_view(), name="project-recalibrate"),
    path("defect-classes", apis.DefectClassListApi.as_view(), name="defect-class-list"),
    path("inspections", apis.InspectionListApi.as_view(), name="inspection-list"),
    path("inspections/<int:pk>", apis.InspectionDetailApi.as_view(), name="inspection-detail"),
    path("inspections/<int:pk>/image", apis.InspectionImageApi.as_view(), name="inspection-image"),
    path("uploads", apis.UploadListApi.as_view(), name="upload-list"),
    path("uploads/<uuid:pk>", apis.UploadDetailApi.as_view(), name="upload-detail"),
    path("stations", apis.StationListApi.as_view(), name="station-list"),
    path("stations/<int:pk>/tokens", apis.StationTokenIssueApi.as_view(), name="station-token-issue"),
    path("station-tokens", apis.StationTokenListApi.as_view(), name="station-token-list"),
    path("station-tokens/<int:pk>/revoke", apis.StationTokenRevokeApi.as_view(), name="station-token-revoke"),
    path(
        "inspections/<int:pk>/heatmap", apis.InspectionOverlayApi.as_view(overlay="heatmap"), name="inspection-heatmap"
    ),
    path("inspections/<int:pk>/mask", apis.InspectionOverlayApi.as_view(overlay="mask"), name="inspection-mask"),
    path("model-versions", apis.ModelVersionListApi.as_view(), name="model-version-list"),
    path("model-versions/<int:pk>", apis.ModelVersionDetailApi.as_view(), name="model-version-detail"),
    path("model-versions/<int:pk>/<str:action>", apis.ModelVersionActionApi.as_view(), name="model-version-action"),
    path("audit-events", apis.AuditEventListApi.as_view(), name="audit-event-list"),
    path("audit-events/export", apis.AuditEventExportApi.as_view(), name="audit-event-export"),
    path("webhooks", apis.WebhookListApi.as_view(), name="webhook-list"),
    path("webhooks/<int:pk>/deactivate", apis.WebhookDeactivateApi.as_view(), name="webhook-deactivate"),
    path("webhook-deliveries", apis.WebhookDeliveryListApi.as_view(), name="webhook-delivery-list"),
    path("webhook-deliveries/<int:pk>", apis.WebhookDeliveryDetailApi.as_view(), name="webhook-delivery-detail"),
    path("parts", apis.PartListApi.as_view(), name="part-list"),
    path("parts/<int:pk>", apis.PartDetailApi.as_view(), name="part-detail"),
    path("verdicts", apis.VerdictListApi.as_view(), name="verdict-list"),
    path("verdicts/<int:pk>", apis.VerdictDetailApi.as_view(), name="verdict-detail"),
    path("memberships", apis.MembershipListApi.as_view(), name="membership-list"),
    path("memberships/<int:pk>", apis.MembershipDetailApi.as_view(), name="membership-detail"),
]
