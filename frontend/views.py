"""Server-rendered shells; all data comes from the public API and the websocket."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "frontend/home.html")


@login_required
def review_console(request: HttpRequest) -> HttpResponse:
    return render(request, "frontend/review.html")
