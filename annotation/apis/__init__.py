"""HTTP API views, split by aggregate. ``annotation.urls`` imports from here."""

from annotation.apis.annotations import AnnotationDetailApi, AnnotationImageApi, AnnotationListApi
from annotation.apis.label_tasks import (
    LabelAdjudicateApi,
    LabelAssistApi,
    LabelHistoryApi,
    LabelPrelabelsApi,
    LabelSaveApi,
    LabelTaskDetailApi,
    LabelTaskListApi,
    LabelTaskNextApi,
    LabelTaskSkipApi,
    ProjectLabellingApi,
)
from annotation.apis.tiles import InspectionTileApi, InspectionTilesApi

__all__ = [
    "AnnotationDetailApi",
    "AnnotationImageApi",
    "AnnotationListApi",
    "InspectionTileApi",
    "InspectionTilesApi",
    "LabelAdjudicateApi",
    "LabelAssistApi",
    "LabelHistoryApi",
    "LabelPrelabelsApi",
    "LabelSaveApi",
    "LabelTaskDetailApi",
    "LabelTaskListApi",
    "LabelTaskNextApi",
    "LabelTaskSkipApi",
    "ProjectLabellingApi",
]
