from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from frontend import views as frontend_views

# The admin is for superusers only: a staff user cannot reach it, so no one edits their own
# role, groups or is_superuser through it (bad-inputs case 3).
admin.site.has_permission = lambda request: bool(  # type: ignore[method-assign]
    request.user.is_active and request.user.is_superuser
)

api_v1 = [
    path("", include("inspection.urls")),
    path("", include("review.urls")),
    path("", include("annotation.urls")),
]

urlpatterns = [
    path("", frontend_views.app, name="home"),
    path("review/", frontend_views.review_console, name="review-console"),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="frontend/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
