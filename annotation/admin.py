from django.contrib import admin

from annotation.models import Annotation, Label, LabelTask


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "project", "image", "source", "outcome", "defect_class", "author", "created_at"]
    list_filter = ["source", "outcome"]


@admin.register(LabelTask)
class LabelTaskAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "project", "inspection", "status", "priority", "labels_submitted", "created_at"]
    list_filter = ["status"]
    raw_id_fields = ["inspection", "adjudicated_by", "adjudicated_defect_class"]


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "task", "author", "version", "outcome", "defect_class", "submitted", "updated_at"]
    list_filter = ["submitted", "outcome"]
    raw_id_fields = ["task", "author", "defect_class"]
