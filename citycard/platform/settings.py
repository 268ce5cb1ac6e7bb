"""Settings for every deployment, read from the environment.

Nothing here is specific to one machine: with no environment at all the project runs on its own
embedded PostgreSQL and an embedded (filesystem) Celery broker under ``CITYCARD_DATA_DIR``.
See docs/configuration.md for every variable.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import NoReturn

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from citycard.platform.embedded_pg import data_dir_chosen

PACKAGE_DIR = Path(__file__).resolve().parent


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


# CITYCARD_DATA_DIR, else ./.citycard/demo when `make demo` made it here, else ~/.local/share/citycard.
DATA_DIR, DATA_DIR_SOURCE = data_dir_chosen()


# ---------------------------------------------------------------------------------------------------
# Security and production (docs/configuration.md, "Production"). With nothing set this is a development
# or demo machine: a secret key generated into the data directory, plain HTTP. CITYCARD_PRODUCTION=on
# refuses to start without a real secret key and master key from the environment, and turns Secure
# cookies and the HTTPS redirect on unless told otherwise. HSTS is opt-in (seconds > 0): browsers remember
# it, so it is only set once HTTPS works on the base domain and every tenant's subdomain.
# ---------------------------------------------------------------------------------------------------
PRODUCTION = _env_bool("CITYCARD_PRODUCTION", False)


def _refuse(message: str) -> NoReturn:
    raise ImproperlyConfigured(message)  # citycard's CLI prints it as one line and exits 2


def _secret_key() -> str:
    """CITYCARD_SECRET_KEY (or SECRET_KEY, its older name) from the environment; outside production,
    one generated once and kept in the data directory."""
    key = (os.environ.get("CITYCARD_SECRET_KEY") or os.environ.get("SECRET_KEY") or "").strip()
    if PRODUCTION:
        generate = "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"
        if not key:
            _refuse(
                f"CITYCARD_PRODUCTION is on but CITYCARD_SECRET_KEY is not set; generate one with {generate}"
            )
        # Django's own bar (check --deploy, security.W009), which placeholders like "change-me" fail too.
        if len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure-"):
            _refuse(
                "CITYCARD_SECRET_KEY is too weak for production (a placeholder? it needs at least 50 "
                f"characters, 5 distinct); generate one with {generate}"
            )
        return key
    if key:
        return key
    key_file = DATA_DIR / "secret_key"
    try:
        return key_file.read_text().strip()
    except FileNotFoundError:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        key_file.write_text(key)
        key_file.chmod(0o600)
        return key


SECRET_KEY = _secret_key()
if PRODUCTION and not os.environ.get("CITYCARD_MASTER_KEY", "").strip():
    # keys.py would otherwise generate a development master key into the data directory on first use.
    _refuse("CITYCARD_PRODUCTION is on but CITYCARD_MASTER_KEY is not set (see docs/configuration.md)")
DEBUG = _env_bool("CITYCARD_DEBUG", False)
BASE_DOMAIN = os.environ.get("CITYCARD_BASE_DOMAIN", "localhost").strip().lower()
ALLOWED_HOSTS = [BASE_DOMAIN, f".{BASE_DOMAIN}", "testserver", ".testserver"]
if os.environ.get("CITYCARD_EXTRA_HOSTS"):
    ALLOWED_HOSTS += [h.strip() for h in os.environ["CITYCARD_EXTRA_HOSTS"].split(",") if h.strip()]


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


# Browsers' requests from the base domain and every tenant's subdomain (plain HTTP only outside production),
# plus any other origin named (a load balancer's name, an admin on another host).
CSRF_TRUSTED_ORIGINS = [f"https://*.{BASE_DOMAIN}"]
if not PRODUCTION:
    CSRF_TRUSTED_ORIGINS.append(f"http://*.{BASE_DOMAIN}")
CSRF_TRUSTED_ORIGINS += _env_list("CITYCARD_CSRF_TRUSTED_ORIGINS")
# HTTPS: redirect plain HTTP (not the health checks: probes call the process directly), cookies over HTTPS only.
SECURE_SSL_REDIRECT = _env_bool("CITYCARD_SSL_REDIRECT", PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _env_bool("CITYCARD_SECURE_COOKIES", PRODUCTION)
SECURE_HSTS_SECONDS = int(os.environ.get("CITYCARD_HSTS_SECONDS") or "0")
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("CITYCARD_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = _env_bool("CITYCARD_HSTS_PRELOAD", False)
# Behind a TLS-terminating proxy: the header (as Django's META names it) saying the client used HTTPS,
# e.g. HTTP_X_FORWARDED_PROTO. Only set it when the proxy always sets or strips that header itself.
if os.environ.get("CITYCARD_PROXY_SSL_HEADER", "").strip():
    SECURE_PROXY_SSL_HEADER = (os.environ["CITYCARD_PROXY_SSL_HEADER"].strip(), "https")
# /readyz: how long each check (database, broker) may take before it counts as down.
READINESS_TIMEOUT_S = float(os.environ.get("CITYCARD_READINESS_TIMEOUT_S") or "2")

# ---------------------------------------------------------------------------------------------------
# Applications. SHARED_APPS live in the public schema (the platform and interop); TENANT_APPS are
# created in every tenant's schema (and in the template schema new tenants are cloned from).
# ---------------------------------------------------------------------------------------------------
SHARED_APPS = [
    # citycard.platform first: its `migrate` (public, template, tenants) overrides django-tenants'.
    "citycard.platform",
    "django_tenants",
    "citycard.platform.audit",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.admin",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "graphene_django",  # GraphiQL's template
    "citycard.graphql",  # no models: its `citycard graphql schema` command
    "citycard.interop",
]
TENANT_APPS = [
    "citycard.platform.audit",
    "citycard.tenants.terminals",
    "citycard.tenants.fares",
    "citycard.tenants.cards",
    "citycard.tenants.departments",
    "citycard.tenants.accounts",
    "citycard.tenants.payments",
    "citycard.tenants.exchange",
    "citycard.tenants.medical",
    "citycard.tenants.entitlements",
    "citycard.tenants.merchants",
    "citycard.tenants.credit",
    "citycard.tenants.settlement",  # a settled clearing cycle booked on the ledger (above merchants, credit)
    "citycard.tenants.dashboard",  # no models: the city dashboard's pages
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "platform.Tenant"
TENANT_DOMAIN_MODEL = "platform.Domain"
PUBLIC_SCHEMA_NAME = "public"
# New tenants are cloned from this schema; `citycard migrate` keeps it in step with the migrations.
TENANT_BASE_SCHEMA = "_template"
TENANT_CREATION_FAKES_MIGRATIONS = True
TENANT_LIMIT_SET_CALLS = True
PUBLIC_SCHEMA_URLCONF = "citycard.platform.urls_public"
ROOT_URLCONF = "citycard.platform.urls"
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

AUTH_USER_MODEL = "platform.User"
AUTHENTICATION_BACKENDS = ["citycard.platform.roles.RoleBackend"]
LOGIN_URL = "admin:login"

MIDDLEWARE = [
    "citycard.platform.middleware.TenantMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Nothing anonymous but health checks and self-authenticating endpoints; sessions only on their own site.
    "citycard.platform.middleware.SiteAccessMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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

WSGI_APPLICATION = "citycard.platform.wsgi.application"

# ---------------------------------------------------------------------------------------------------
# Database: DATABASE_URL names any PostgreSQL; without it the embedded server (pgserver) is started
# on first connection in DATA_DIR/pg and reused by every later process.
# ---------------------------------------------------------------------------------------------------
DB_ENGINE = "citycard.platform.db"
if os.environ.get("DATABASE_URL"):
    _db = dj_database_url.parse(os.environ["DATABASE_URL"], engine=DB_ENGINE)
else:
    _db = {
        "ENGINE": DB_ENGINE,
        "NAME": os.environ.get("CITYCARD_DB_NAME", "citycard"),
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "",
        "PORT": "",
        "EMBEDDED_PGDATA": str(DATA_DIR / "pg"),
    }
# CITYCARD_DB_POOLING=transaction: DATABASE_URL names a PgBouncer in transaction mode (docs/scale-out.md,
# "Connection pooling"). Nothing may then outlive a transaction on the server: the schema travels with each
# transaction (citycard/platform/db/base.py), no server-side cursors (a WITH HOLD cursor outlives its
# transaction), no prepared statements; the connection to PgBouncer is not kept between requests (it is
# cheap, and a pooler restart then costs nothing), and checked before reuse when it is.
DB_POOLING = os.environ.get("CITYCARD_DB_POOLING", "").strip().lower() or "off"
if DB_POOLING not in {"off", "transaction"}:
    _refuse(f"CITYCARD_DB_POOLING must be off or transaction, not {DB_POOLING!r}")
if DB_POOLING == "transaction":
    if not os.environ.get("DATABASE_URL"):
        _refuse("CITYCARD_DB_POOLING=transaction needs DATABASE_URL naming the PgBouncer")
    _db["TRANSACTION_POOLING"] = True
    _db["DISABLE_SERVER_SIDE_CURSORS"] = True
    _db["CONN_HEALTH_CHECKS"] = True
_db.setdefault(
    "CONN_MAX_AGE", int(os.environ.get("CITYCARD_CONN_MAX_AGE", "0" if DB_POOLING == "transaction" else "60"))
)
_db.setdefault("TEST", {"NAME": "test_" + str(_db.get("NAME") or "citycard")})
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        # Cache keys carry the schema so one tenant never reads another's cached values.
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# Chinese first, English second (docs/configuration.md, "Languages"): every page and the admin speak
# LANGUAGE_CODE unless the browser's Accept-Language or the language switch (its cookie) asks for the other.
# The catalogue is citycard/locale/zh_Hans/LC_MESSAGES/django.po, compiled to .mo by `make`.
LANGUAGE_CODE = os.environ.get("CITYCARD_LANGUAGE", "zh-hans")
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [PACKAGE_DIR.parent / "locale"]
LANGUAGE_COOKIE_NAME = "citycard_language"
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
# `citycard roaming simulate`: its terminals' keys, PSAMs and queues and its test cards' wallets.
SIMULATOR_DIR = Path(os.environ.get("CITYCARD_SIMULATOR_DIR") or DATA_DIR / "simulator")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_NAME = "citycard_session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# ---------------------------------------------------------------------------------------------------
# Celery: CELERY_BROKER_URL (redis://, amqp://) for workers on several machines; otherwise an embedded
# broker under DATA_DIR that every process on this machine shares: a redis-server of its own
# (embedded_redis.py, started by the first process that needs it), which hands a task whose worker died
# out again; without the redis-server program, the filesystem broker, which loses such a task (the
# clearing resume sweep below still finishes the cycle). docs/clearing.md, "When a worker dies".
# ---------------------------------------------------------------------------------------------------
from citycard.platform import embedded_redis  # noqa: E402

BROKER_DIR = DATA_DIR / "broker"
EMBEDDED_BROKER_DIR: Path | None = None  # the embedded redis-server's directory, when it is the broker
if os.environ.get("CELERY_BROKER_URL"):
    CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"]
elif embedded_redis.available():
    EMBEDDED_BROKER_DIR = DATA_DIR / "redis"
    CELERY_BROKER_URL = embedded_redis.broker_url(EMBEDDED_BROKER_DIR)
else:
    CELERY_BROKER_URL = "filesystem://"
# A task taken by a worker that stops answering is handed out again this long after it was taken (Redis):
# longer than any task runs, or a slow task runs twice (harmless for the idempotent clearing steps,
# wasted work all the same). RabbitMQ hands it out again as soon as the worker's connection drops.
BROKER_VISIBILITY_TIMEOUT_S = int(os.environ.get("CITYCARD_BROKER_VISIBILITY_TIMEOUT_S", "600"))
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
    CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", f"file://{DATA_DIR / 'results'}")
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
else:
    CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
if CELERY_BROKER_URL.startswith(("redis", "sentinel")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": BROKER_VISIBILITY_TIMEOUT_S,
        # Workers look for tasks past their visibility timeout every tenth of it (1–10 s; one Redis query).
        "unacked_restore_interval": max(1, min(10, BROKER_VISIBILITY_TIMEOUT_S // 10)),
        "unacked_restore_throttle": 1,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
# A task is acknowledged after it ran, not when a worker takes it, so the broker still holds it if the
# worker dies (and a pool process that dies has it handed out again at once); a worker takes one task per
# pool process at a time, so a dying worker holds no queue of others' work.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = _env_bool("CITYCARD_CELERY_EAGER", False)
# Clearing's resume sweep: a cycle still closed, validated or netted this long after its last step (its
# task lost with a worker, or failing) is processed again; the sweep runs this often.
CLEARING_RESUME_AFTER_S = int(os.environ.get("CITYCARD_CLEARING_RESUME_AFTER_S", "900"))
CLEARING_RESUME_EVERY_S = float(os.environ.get("CITYCARD_CLEARING_RESUME_EVERY_S", "300"))
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "audit-verify-nightly": {
        "task": "citycard.platform.tasks.audit_verify_all",
        "schedule": 24 * 3600,
    },
    "graphql-rate-windows-purge": {
        "task": "citycard.platform.tasks.rate_windows_purge",
        "schedule": 3600,
    },
    # Clearing: cycles past their cut-off are closed and taken through to settlement.
    "interop-cycles-close-due": {
        "task": "citycard.interop.tasks.cycles_close_due",
        "schedule": 15 * 60,
    },
    "interop-cycles-resume-stuck": {
        "task": "citycard.interop.tasks.cycles_resume_stuck",
        "schedule": CLEARING_RESUME_EVERY_S,
    },
    # The verification stage: stored-data checks over the batches uploaded since the last run.
    "terminals-batches-verify": {
        "task": "citycard.tenants.terminals.tasks.batches_verify_all",
        "schedule": float(os.environ.get("CITYCARD_TERMINAL_VERIFY_EVERY_S", "10")),
    },
    # Visitors' entitlements (异地权益名单) into each tenant's offline list, for gates to decide offline.
    "interop-visitor-lists-sync": {
        "task": "citycard.interop.tasks.visitor_lists_sync_all",
        "schedule": float(os.environ.get("CITYCARD_VISITOR_LISTS_EVERY_S", "900")),
    },
    # Half journeys past their time-out cleared alone (docs/clearing.md, "Half journeys").
    "terminals-half-journeys-release": {
        "task": "citycard.tenants.terminals.tasks.half_journeys_release_all",
        "schedule": float(os.environ.get("CITYCARD_HALF_JOURNEY_RELEASE_EVERY_S", "900")),
    },
    # Channel orders left unpaid or unnotified: asked for (查单), credited or closed (docs/payments.md).
    "payments-orders-sweep": {
        "task": "citycard.tenants.payments.tasks.orders_sweep_all",
        "schedule": float(os.environ.get("CITYCARD_PAYMENTS_SWEEP_EVERY_S", "120")),
    },
    # Citizen-code rides' fares (电子市民码, 先乘后付) onto credit lines or online accounts (docs/credit.md).
    "credit-online-fares-book": {
        "task": "citycard.tenants.credit.tasks.online_fares_book_all",
        "schedule": float(os.environ.get("CITYCARD_CREDIT_FARES_EVERY_S", "300")),
    },
    # Records booked after their cycle settled (a code ride's fare charged late), settled on the ledger
    # (docs/merchants.md, "The cycle's settlement on each ledger").
    "settlement-late-records": {
        "task": "citycard.tenants.settlement.tasks.differences_settle_late_all",
        "schedule": float(os.environ.get("CITYCARD_SETTLEMENT_LATE_EVERY_S", "300")),
    },
    # Spent citizen codes too old to be replayed, forgotten (docs/ingestion.md).
    "terminals-code-nonces-purge": {
        "task": "citycard.tenants.terminals.tasks.code_nonces_purge_all",
        "schedule": 24 * 3600,
    },
    # Month partitions of the transaction table: this month and the next three in every tenant.
    "terminals-partitions-ahead": {
        "task": "citycard.tenants.terminals.tasks.partitions_ensure_all",
        "schedule": 6 * 3600,
    },
}

# Terminal batch ingestion (docs/ingestion.md).
TERMINAL_BATCH_MAX_BYTES = int(os.environ.get("CITYCARD_TERMINAL_BATCH_MAX_BYTES", str(4 * 1024 * 1024)))
TERMINAL_BATCH_MAX_TAPS = int(os.environ.get("CITYCARD_TERMINAL_BATCH_MAX_TAPS", "5000"))
# Server-side prepared statements of the upload (storage.py): a transaction-mode pooler keeps no session's.
TERMINAL_PREPARED_STATEMENTS = (
    os.environ.get("CITYCARD_TERMINAL_PREPARED_STATEMENTS", "off" if DB_POOLING == "transaction" else "on")
    != "off"
)
TERMINAL_MAX_CLOCK_SKEW_S = int(os.environ.get("CITYCARD_TERMINAL_MAX_CLOCK_SKEW_S", "300"))
# When the checks against stored data (TAC, card counters, hotlist, e-purse shadow, fare re-check) run:
# "deferred" — the verification stage, after the upload answered (beat task every few seconds);
# "inline" — inside the upload, before it answers.
TERMINAL_VERIFY = os.environ.get("CITYCARD_TERMINAL_VERIFY", "deferred")
# Taps on an own card listed on the hotlist at least this long before are flagged (time for terminals to
# download it). Minutes, as every hotlist grace (terminal_kit.hotlist: the one rule).
HOTLIST_GRACE_MINUTES = int(os.environ.get("CITYCARD_HOTLIST_GRACE_MINUTES", "30"))
# Half journeys (an entry without exit, an exit without entry) are released to clearing alone after the
# gate rules' journey time limit plus this upload grace; a non-empty RELEASE_MINUTES overrides the sum.
HALF_JOURNEY_GRACE_MINUTES = int(os.environ.get("CITYCARD_HALF_JOURNEY_GRACE_MINUTES", "120"))
HALF_JOURNEY_RELEASE_MINUTES = int(os.environ.get("CITYCARD_HALF_JOURNEY_RELEASE_MINUTES") or "0")

# --- Terminal routes (/terminal/… on a tenant's domain): every answer JSON with a code, outages of the
# database or broker 503 with Retry-After (citycard/platform/terminal_answers.py, docs/ingestion.md).
# Outermost, so it also sees what the tenant routing answers. The upload reads its body itself up to
# TERMINAL_BATCH_MAX_BYTES: DATA_UPLOAD_MAX_MEMORY_SIZE (Django's 2.5 MiB) stays for every other route.
TERMINAL_URL_PREFIX = "/terminal/"
TERMINAL_RETRY_AFTER_S = int(os.environ.get("CITYCARD_TERMINAL_RETRY_AFTER_S", "30"))
MIDDLEWARE = ["citycard.platform.terminal_answers.TerminalAnswersMiddleware", *MIDDLEWARE]

# Cardholder verification (实名核验: cardholderVerify, cardReportLost): failed attempts allowed per card per
# fixed window, after which the card answers no verification until the window ends (guessing an ID number
# for a known card would otherwise take about a thousand tries).
ID_VERIFY_MAX_FAILURES = int(os.environ.get("CITYCARD_ID_VERIFY_MAX_FAILURES", "10"))
ID_VERIFY_WINDOW_S = int(os.environ.get("CITYCARD_ID_VERIFY_WINDOW_S", "86400"))

# GraphQL (docs/graphql.md): limits of both endpoints; introspection and GraphiQL on in development.
GRAPHQL_INTROSPECTION = _env_bool("CITYCARD_GRAPHQL_INTROSPECTION", DEBUG)
GRAPHQL_GRAPHIQL = _env_bool("CITYCARD_GRAPHQL_GRAPHIQL", DEBUG)
GRAPHQL_MAX_DEPTH = int(os.environ.get("CITYCARD_GRAPHQL_MAX_DEPTH", "8"))
GRAPHQL_MAX_COST = int(os.environ.get("CITYCARD_GRAPHQL_MAX_COST", "1000"))
GRAPHQL_MAX_ALIASES = int(os.environ.get("CITYCARD_GRAPHQL_MAX_ALIASES", "15"))
GRAPHQL_MAX_BATCH = int(os.environ.get("CITYCARD_GRAPHQL_MAX_BATCH", "5"))
GRAPHQL_PAGE_MAX = 100
GRAPHQL_RATE_LIMIT = int(os.environ.get("CITYCARD_GRAPHQL_RATE_LIMIT", "600"))
GRAPHQL_RATE_WINDOW_S = int(os.environ.get("CITYCARD_GRAPHQL_RATE_WINDOW_S", "60"))
# GraphQL request bounds: checked before a document is parsed (bytes, tokens), before it is validated
# (fields, repeats of one field) and before a batch runs (its summed cost); failed authentications per
# client address (the address from X-Forwarded-For only behind that many trusted proxies).
GRAPHQL_MAX_BODY_BYTES = int(os.environ.get("CITYCARD_GRAPHQL_MAX_BODY_BYTES", "65536"))
GRAPHQL_MAX_DOCUMENT_BYTES = int(os.environ.get("CITYCARD_GRAPHQL_MAX_DOCUMENT_BYTES", "16384"))
GRAPHQL_MAX_TOKENS = int(os.environ.get("CITYCARD_GRAPHQL_MAX_TOKENS", "2000"))
GRAPHQL_MAX_FIELDS = int(os.environ.get("CITYCARD_GRAPHQL_MAX_FIELDS", "500"))
GRAPHQL_MAX_FIELD_REPEATS = int(os.environ.get("CITYCARD_GRAPHQL_MAX_FIELD_REPEATS", "10"))
GRAPHQL_MAX_BATCH_COST = int(os.environ.get("CITYCARD_GRAPHQL_MAX_BATCH_COST", "1000"))
GRAPHQL_AUTH_FAILURES = int(os.environ.get("CITYCARD_GRAPHQL_AUTH_FAILURES", "20"))
GRAPHQL_AUTH_FAILURES_WINDOW_S = int(os.environ.get("CITYCARD_GRAPHQL_AUTH_FAILURES_WINDOW_S", "600"))
GRAPHQL_TRUSTED_PROXIES = int(os.environ.get("CITYCARD_GRAPHQL_TRUSTED_PROXIES", "0"))
# For anything built on graphene-django's own connection fields (ours page by keyset, same limits).
GRAPHENE = {
    "SCHEMA": None,
    "RELAY_CONNECTION_ENFORCE_FIRST_OR_LAST": True,
    "RELAY_CONNECTION_MAX_LIMIT": GRAPHQL_PAGE_MAX,
    "ATOMIC_MUTATIONS": True,
}

# ---------------------------------------------------------------------------------------------------
# Operability (docs/operations.md, "Logs" and "Metrics"; citycard/platform/observability/). Log lines are
# JSON unless stderr is a terminal (CITYCARD_LOG_FORMAT=json|text|auto): one per request (the middleware
# below, outermost: it sees every answer) and one per Celery task. Prometheus metrics of every process of
# this machine are summed from PROMETHEUS_MULTIPROC_DIR (default DATA_DIR/metrics) and served on /metrics,
# routed on every host like the health checks, to signed-in platform staff or to a client address in
# CITYCARD_METRICS_ALLOW (default loopback). Sentry only with SENTRY_DSN (and sentry-sdk installed).
# ---------------------------------------------------------------------------------------------------
from citycard.platform.observability import addresses as _addresses  # noqa: E402
from citycard.platform.observability import logs as _logs  # noqa: E402
from citycard.platform.observability import sentry as _sentry  # noqa: E402

try:
    LOG_FORMAT = _logs.log_format(os.environ.get("CITYCARD_LOG_FORMAT"))
    METRICS_ALLOW = _addresses.networks_parse(os.environ.get("CITYCARD_METRICS_ALLOW"))
except ValueError as _exc:
    _refuse(str(_exc))
LOG_REQUESTS = _env_bool("CITYCARD_LOG_REQUESTS", True)
METRICS_DIR = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or DATA_DIR / "metrics")
SECURE_REDIRECT_EXEMPT = [*SECURE_REDIRECT_EXEMPT, r"^metrics$"]  # scrapers call the process directly
MIDDLEWARE = ["citycard.platform.observability.requests.RequestLogMiddleware", *MIDDLEWARE]
SENTRY_DSN = os.environ.get("SENTRY_DSN", "").strip()
if SENTRY_DSN:
    _sentry.sentry_init(
        dsn=SENTRY_DSN, traces_sample_rate=float(os.environ.get("SENTRY_TRACES_SAMPLE_RATE") or "0")
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "citycard.platform.observability.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("CITYCARD_LOG_LEVEL", "WARNING")},
    "loggers": {
        "pgserver": {"level": "WARNING"},
        # The request and task lines are INFO whatever the root level (CITYCARD_LOG_LEVEL).
        "citycard.request": {"level": "INFO" if LOG_REQUESTS else "WARNING"},
        "citycard.task": {"level": "INFO"},
    },
}
