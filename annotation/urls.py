from django.urls import path

from annotation import apis

urlpatterns = [
    path("annotations", apis.AnnotationListApi.as_view(), name="annotation-list"),
    path("annotations/<int:pk>", apis.AnnotationDetailApi.as_view(), name="annotation-detail"),
]
