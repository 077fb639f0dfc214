"""Serves the single-page front end built by Vite; all data comes from /api/v1 and /ws/review/."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import staticfiles_storage
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render

MANIFEST = "frontend/app/manifest.json"
ENTRY = "src/main.ts"

# Scripts only from this origin, never inline: a label that slipped through as HTML still
# could not run (bad-inputs case 20, defence in depth). ECharts sizes its canvas with inline
# style attributes, hence 'unsafe-inline' for styles only.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' blob:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)


def _read_manifest() -> dict[str, Any] | None:
    path = finders.find(MANIFEST) if settings.DEBUG else None
    if not path and staticfiles_storage.exists(MANIFEST):
        path = staticfiles_storage.path(MANIFEST)
    if not path:
        path = finders.find(MANIFEST)
    if not path:
        return None
    with open(path if isinstance(path, str) else path[0], encoding="utf-8") as handle:
        manifest: dict[str, Any] = json.load(handle)
    return manifest


@lru_cache(maxsize=1)
def _cached_manifest() -> dict[str, Any] | None:
    return _read_manifest()


def app_assets() -> dict[str, list[str]] | None:
    """The entry script and its CSS from Vite's manifest (hashed names), or None if unbuilt."""
    manifest = _read_manifest() if settings.DEBUG else _cached_manifest()
    if manifest is None or ENTRY not in manifest:
        return None
    entry = manifest[ENTRY]
    return {
        "scripts": [f"frontend/app/{entry['file']}"],
        "styles": [f"frontend/app/{css}" for css in entry.get("css", [])],
    }


def app(request: HttpRequest) -> HttpResponse:
    assets = app_assets()
    if assets is None:
        return HttpResponse(
            "The front end is not built. Run `make frontend` (or `make demo`), then reload.",
            status=503,
            content_type="text/plain",
        )
    response = render(request, "frontend/app.html", assets)
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def review_console(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect("/#/review")
