from django.contrib import admin

from review.models import ReviewItem


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "project", "part", "status", "reason", "created_at"]
    list_filter = ["status", "reason"]
    readonly_fields = [field.name for field in ReviewItem._meta.fields]
