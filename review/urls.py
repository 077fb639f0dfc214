from django.urls import path

from review import apis

urlpatterns = [
    path("review-items", apis.ReviewItemListApi.as_view(), name="review-item-list"),
    path("review-items/<int:pk>", apis.ReviewItemDetailApi.as_view(), name="review-item-detail"),
    path("review-items/<int:pk>/decide", apis.ReviewItemDecideApi.as_view(), name="review-item-decide"),
]
