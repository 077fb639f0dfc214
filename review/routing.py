from django.urls import path

from review.consumers import ReviewConsumer

websocket_urlpatterns = [path("ws/review/", ReviewConsumer.as_asgi())]
