from django.contrib import admin

from annotation.models import Annotation


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "project", "image", "source", "outcome", "defect_class", "author", "created_at"]
    list_filter = ["source", "outcome"]
