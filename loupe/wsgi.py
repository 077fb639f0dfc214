"""WSGI entry point (HTTP only; production serves loupe.asgi for websockets)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loupe.settings")

application = get_wsgi_application()
