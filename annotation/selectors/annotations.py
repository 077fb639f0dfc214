from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from annotation.models import Annotation
from inspection.selectors import project_ids_for


def annotations_for(*, user: Any) -> QuerySet[Annotation]:
    return Annotation.objects.filter(project_id__in=project_ids_for(user=user)).select_related("defect_class", "author")
