"""Settings for Campaign staging: one file, driven by the environment (see docs/configuration.md)."""

import os
import re
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from campaignsite.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

# Off unless asked for: a served site must not show debug pages (tracebacks, settings) to its clients.
DEBUG = env_bool("DEBUG", False)


def _secret_key_from_file(path: Path) -> str:
    """The key stored in `path`, generated there (mode 0600) the first time.

    Written to a private temporary file, then linked into place: link fails if the file exists, so
    processes starting together (gunicorn workers, the task cluster) all end up with the same key.
    """
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(50))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    key = path.read_text().strip()
    if len(key) < 50:
        raise ImproperlyConfigured(f"{path} holds a key shorter than 50 characters; delete it to generate a new one "
                                   "or set SECRET_KEY.")
    return key


# Sessions, CSRF tokens and subscription confirmation links are signed with it: the same on every process.
SECRET_KEY = env_str("SECRET_KEY", "") or _secret_key_from_file(Path(env_str("SECRET_KEY_FILE",
                                                                             str(VAR_DIR / "secret_key"))))

# Where `manage.py serve` (make run) listens; "0.0.0.0" or "::" means every interface.
HOST = env_str("HOST", "127.0.0.1")
_WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", ""}
_LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"]
# The loopback names, plus HOST when it names one address; listening on every interface needs the
# names clients will use, which only the operator knows.
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [])
if not ALLOWED_HOSTS:
    if HOST in _WILDCARD_HOSTS:
        raise ImproperlyConfigured(f"HOST={HOST!r} listens on every interface: set ALLOWED_HOSTS to the host names "
                                   "clients use to reach this site (comma-separated), e.g. "
                                   "ALLOWED_HOSTS=campaign.example.com,10.0.0.5")
    ALLOWED_HOSTS = _LOOPBACK_NAMES + ([f"[{HOST}]" if ":" in HOST else HOST]
                                       if HOST not in ("127.0.0.1", "localhost", "::1") else [])
# manage.py serve refuses DEBUG on an address other clients can reach unless this is set.
ALLOW_DEBUG_ON_PUBLIC_HOST = env_bool("ALLOW_DEBUG_ON_PUBLIC_HOST", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "apitokens",
    "staging",
    "subscriptions",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # REST bodies sent with Transfer-Encoding: chunked (the SOAP router reads its own).
    "campaignsite.http.ChunkedBodyMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "campaignsite.urls"
WSGI_APPLICATION = "campaignsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "campaignsite" / "templates"],
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


# --- Databases -------------------------------------------------------------------------------
# "default" is Campaign's local database (Django's tables, staging tables, the task queue);
# "cloud" holds the target tables and subscriptions. campaignsite.routers keeps each app in place.

# Separates the test databases of test runs that share a checkout (e.g. parallel developers).
TEST_DB_TAG = env_str("TEST_DB_TAG", "")


def _without_password(url: str) -> str:
    # Error messages end up in logs and CI output; the password must not.
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _database(name: str, default_url: str) -> dict:
    url = env_str(name, default_url)
    try:
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"{name}={_without_password(url)!r} is not a database URL (sqlite:///path or "
            f"postgres://user@host:port/name): {exc}"
        ) from None
    engine = config["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        # WAL lets readers run beside the single writer; IMMEDIATE takes the write lock at BEGIN
        # so a busy database waits for `timeout` instead of failing half-way through a transaction.
        # Connections are kept like PostgreSQL's (conn_max_age above): opening one and running the
        # PRAGMAs was a quarter of a one-record Ingest call's CPU (docs/benchmarks.md).
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
        }
        # Test databases are files too, so server threads and subprocesses see the same data.
        config["TEST"] = {"NAME": str(VAR_DIR / f"test_{Path(config['NAME']).stem}{TEST_DB_TAG}.sqlite3")}
    elif engine == "django.db.backends.postgresql":
        config["TEST"] = {"NAME": f"test_{config['NAME']}{TEST_DB_TAG}"}
    else:
        raise ImproperlyConfigured(
            f"{name}: only sqlite:// and postgres:// URLs are supported, got {_without_password(url)!r}."
        )
    return config


DATABASES = {
    "default": _database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'local.sqlite3'}"),
    "cloud": _database("CLOUD_DATABASE_URL", f"sqlite:///{VAR_DIR / 'cloud.sqlite3'}"),
}
DATABASE_ROUTERS = ["campaignsite.routers.DatabaseRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# --- Product settings --------------------------------------------------------------
SYNC_INTERVAL_MINUTES = env_int("SYNC_INTERVAL_MINUTES", 60, minimum=1)
STAGING_RETENTION_DAYS = env_int("STAGING_RETENTION_DAYS", 7, minimum=0)
SOAP_SESSION_TTL_SECONDS = env_int("SOAP_SESSION_TTL_SECONDS", 86400, minimum=1)
SOAP_SESSION_TOKEN_ONLY = env_bool("SOAP_SESSION_TOKEN_ONLY", False)
# Failed password logons allowed per window, per login and per client address (0 turns one off);
# see staging/logons.py and docs/configuration.md.
LOGON_THROTTLE_WINDOW_SECONDS = env_int("LOGON_THROTTLE_WINDOW_SECONDS", 900, minimum=1)
LOGON_THROTTLE_PER_LOGIN = env_int("LOGON_THROTTLE_PER_LOGIN", 5, minimum=0)
LOGON_THROTTLE_PER_ADDRESS = env_int("LOGON_THROTTLE_PER_ADDRESS", 20, minimum=0)
# The META key of the header a trusted reverse proxy sets to the client's address, e.g.
# HTTP_X_FORWARDED_FOR; empty: REMOTE_ADDR (right when nothing sits in front of gunicorn).
LOGON_CLIENT_ADDRESS_HEADER = env_str("LOGON_CLIENT_ADDRESS_HEADER", "")
API_TOKEN_TTL_DAYS = env_int("API_TOKEN_TTL_DAYS", 90, minimum=0)  # lifetime of a new API token; 0 = never expires
# Accept "login/password" as a SOAP session token (Campaign's allowUserPassword); off: use Logon.
SOAP_ALLOW_USER_PASSWORD = env_bool("SOAP_ALLOW_USER_PASSWORD", False)
INGEST_MAX_BYTES = env_int("INGEST_MAX_BYTES", 104_857_600, minimum=1024)
INGEST_MAX_RECORDS = env_int("INGEST_MAX_RECORDS", 100_000, minimum=1)
# Schema sources are small documents; this bounds what the admin, the API and load_schema accept.
SCHEMA_MAX_BYTES = env_int("SCHEMA_MAX_BYTES", 1_048_576, minimum=1024)
# Rows a queryDef select answers when it gives no lineCount, and the most any lineCount may ask for.
QUERY_DEFAULT_LINE_COUNT = env_int("QUERY_DEFAULT_LINE_COUNT", 10_000, minimum=1)
QUERY_MAX_LINE_COUNT = env_int("QUERY_MAX_LINE_COUNT", 100_000, minimum=QUERY_DEFAULT_LINE_COUNT)

# Ingest bodies are read by our own bounded readers, so Django's form-oriented cap must not
# reject them first; admin forms are small and stay far below this.
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BYTES


# --- Subscriptions (docs/subscriptions.md) -------------------------------------------
# A request whose recipient is not in the cloud yet is retried at each run, then fails (opt-in) or
# is skipped (opt-out) after this many attempts: 24 is a day of hourly runs.
SUBSCRIPTION_MAX_ATTEMPTS = env_int("SUBSCRIPTION_MAX_ATTEMPTS", 24, minimum=1)
SUBSCRIPTION_CONFIRM_DAYS = env_int("SUBSCRIPTION_CONFIRM_DAYS", 7, minimum=1)  # double opt-in link lifetime
# Where confirmation links point; emails are written by workers, which have no request to ask.
SITE_URL = env_str("SITE_URL", f"http://127.0.0.1:{env_int('PORT', 8000, minimum=1, maximum=65535)}")

# Email: printed on the console unless EMAIL_HOST names an SMTP server.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST
                        else "django.core.mail.backends.console.EmailBackend")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)  # implicit TLS (port 465); otherwise STARTTLS by default
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", not EMAIL_USE_SSL)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "campaign-staging@localhost")


# --- Serving (manage.py serve, used by `make run`; HOST is read with ALLOWED_HOSTS above) ---------
PORT = env_int("PORT", 8000, minimum=1, maximum=65535)
WEB_WORKERS = env_int("WEB_WORKERS", 3, minimum=1)
# Large ingest bodies (up to INGEST_MAX_BYTES) take longer than gunicorn's 30 s default.
WEB_TIMEOUT = env_int("WEB_TIMEOUT", 120, minimum=1)


# --- Task queue (django-q2) ------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(
        f"REDIS_URL={_without_password(REDIS_URL)!r} is not a Redis URL; use redis://host:port/db "
        "(rediss:// for TLS, unix:///path.sock), or leave it unset for the database broker."
    )
Q_CLUSTER = {
    "name": "campaign-staging",
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "timeout": 1800,  # a sync batch loop must finish well inside this
    "retry": 2100,  # must exceed timeout, or a running task is handed out twice
    "max_attempts": 3,
    "ack_failures": False,
    "catch_up": False,
    "save_limit": 500,
    "queue_limit": 4,
    "bulk": 1,
    "poll": 0.5,
    "recycle": 200,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "django_cache"},
}


# --- REST ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apitokens.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, read by the bounded parser (size and nesting depth capped); views that take XML add theirs.
    "DEFAULT_PARSER_CLASSES": ["staging.api.parsers.BoundedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "campaignsite.api.AutoSchema",
    "EXCEPTION_HANDLER": "campaignsite.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Campaign staging API",
    "DESCRIPTION": "Schemas, staging ingestion, synchronization and subscriptions.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}


# --- Auth, i18n, static ----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request while collectstatic has not run
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed names from collectstatic's manifest (make run collects); plain names while
    # there is no manifest yet (tests, a fresh checkout), so pages still render.
    "staticfiles": {"BACKEND": "campaignsite.staticfiles.ManifestOrPlainStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- HTTPS (manage.py check --deploy) ----------------------------------------------------------
# HTTPS=1 when clients reach the site over HTTPS (TLS here or at a proxy that sets X-Forwarded-Proto):
# redirect plain HTTP, secure cookies, HSTS. Off by default so `make run` works over http://127.0.0.1,
# where a secure CSRF cookie would never come back and the admin login would fail.
HTTPS = env_bool("HTTPS", False)
if HTTPS:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
