from django.urls import path

from annotation import apis

urlpatterns = [
    path("annotations", apis.AnnotationListApi.as_view(), name="annotation-list"),
    path("annotations/<int:pk>", apis.AnnotationDetailApi.as_view(), name="annotation-detail"),
    path("annotations/<int:pk>/image", apis.AnnotationImageApi.as_view(), name="annotation-image"),
    # The annotation studio.
    path("label-tasks", apis.LabelTaskListApi.as_view(), name="label-task-list"),
    path("label-tasks/next", apis.LabelTaskNextApi.as_view(), name="label-task-next"),
    path("label-tasks/<int:pk>", apis.LabelTaskDetailApi.as_view(), name="label-task-detail"),
    path("label-tasks/<int:pk>/skip", apis.LabelTaskSkipApi.as_view(), name="label-task-skip"),
    path("label-tasks/<int:pk>/label", apis.LabelSaveApi.as_view(), name="label-task-label"),
    path("label-tasks/<int:pk>/history", apis.LabelHistoryApi.as_view(), name="label-task-history"),
    path("label-tasks/<int:pk>/prelabels", apis.LabelPrelabelsApi.as_view(), name="label-task-prelabels"),
    path("label-tasks/<int:pk>/assist", apis.LabelAssistApi.as_view(), name="label-task-assist"),
    path("label-tasks/<int:pk>/adjudicate", apis.LabelAdjudicateApi.as_view(), name="label-task-adjudicate"),
    path("projects/<int:pk>/labelling", apis.ProjectLabellingApi.as_view(), name="project-labelling"),
    # The image pyramid (same access as the image itself).
    path("inspections/<int:pk>/tiles", apis.InspectionTilesApi.as_view(), name="inspection-tiles"),
    path(
        "inspections/<int:pk>/tiles/<int:level>/<int:col>/<int:row>",
        apis.InspectionTileApi.as_view(),
        name="inspection-tile",
    ),
]
