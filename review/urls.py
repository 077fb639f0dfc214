from django.urls import path

from review import apis

urlpatterns = [
    path("review-items", apis.ReviewItemListApi.as_view(), name="review-item-list"),
    path("review-items/claim", apis.ReviewItemClaimApi.as_view(), name="review-item-claim"),
    path("review-items/<int:pk>", apis.ReviewItemDetailApi.as_view(), name="review-item-detail"),
    path("review-items/<int:pk>/release", apis.ReviewItemReleaseApi.as_view(), name="review-item-release"),
    path("review-queue", apis.ReviewQueueStatsApi.as_view(), name="review-queue"),
    path("golden-parts", apis.GoldenPartListApi.as_view(), name="golden-part-list"),
    path("quality", apis.QualityMetricsApi.as_view(), name="quality-metrics"),
    path("review-items/<int:pk>/decide", apis.ReviewItemDecideApi.as_view(), name="review-item-decide"),
]
