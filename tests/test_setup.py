"""Set-up as the README and docs/configuration.md describe it: typed environment, two databases and the router, the admin account,
production checks. Settings are read once per process, so each environment variant runs `manage.py`
in a subprocess, exactly as an operator would.
"""

import os
import re
import secrets
import socket
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.db import connections

from campaignsite import routers
from tests.conftest import BOTH_DATABASES, skip_or_fail

BASE_DIR = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/0"
# Variables that change what settings.py does; each subprocess starts from a clean slate of them.
_SETTINGS_VARS = (
    "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "REDIS_URL", "SYNC_INTERVAL_MINUTES", "PORT", "HOST",
    "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "CSRF_TRUSTED_ORIGINS", "HTTPS", "SECRET_KEY_FILE",
    "ALLOW_DEBUG_ON_PUBLIC_HOST",
)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in _SETTINGS_VARS}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=environment,
        capture_output=True, text=True, timeout=120,
    )


# --- typed environment -------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name, value",
    [
        ("SYNC_INTERVAL_MINUTES", "abc"),
        ("SYNC_INTERVAL_MINUTES", "0"),
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "mysql://root@127.0.0.1/campaign"),
        ("CLOUD_DATABASE_URL", "nonsense://x"),
        ("REDIS_URL", "127.0.0.1:6379"),
        ("PORT", "70000"),
        ("INGEST_MAX_BYTES", "lots"),
    ],
)
def test_bad_environment_value_stops_manage_py_naming_the_variable(name, value):
    result = manage("check", **{name: value})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr.splitlines()[-1]


def test_database_url_error_does_not_print_the_password():
    result = manage("check", DATABASE_URL="mysql://campaign:s3cret-pw@db.example.com/campaign")

    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr
    assert "s3cret-pw" not in result.stderr


def setting(name: str, **env: str) -> str:
    result = manage("shell", "--no-imports", "-c", f"from django.conf import settings; print(settings.{name})", **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_debug_is_off_unless_asked_for():
    assert setting("DEBUG") == "False"
    assert setting("DEBUG", DEBUG="1") == "True"


def test_without_secret_key_one_is_generated_once_readable_by_the_owner_only_and_reused(tmp_path):
    key_file = tmp_path / "secret_key"

    first = setting("SECRET_KEY", SECRET_KEY_FILE=str(key_file))
    second = setting("SECRET_KEY", SECRET_KEY_FILE=str(key_file))

    assert first == second == key_file.read_text().strip() and len(first) >= 50
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert setting("SECRET_KEY", SECRET_KEY_FILE=str(key_file), SECRET_KEY="x" * 60) == "x" * 60


def test_allowed_hosts_are_the_loopback_names_plus_a_specific_host():
    assert setting("ALLOWED_HOSTS") == "['127.0.0.1', 'localhost', '[::1]']"
    assert setting("ALLOWED_HOSTS", HOST="10.0.0.5") == "['127.0.0.1', 'localhost', '[::1]', '10.0.0.5']"


def test_listening_on_every_interface_requires_allowed_hosts():
    result = manage("check", HOST="0.0.0.0")

    assert result.returncode != 0
    assert "ALLOWED_HOSTS" in result.stderr.splitlines()[-1]
    assert manage("check", HOST="0.0.0.0", ALLOWED_HOSTS="campaign.example.com").returncode == 0


def test_production_settings_pass_check_deploy_without_warnings():
    production = dict(SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="example.com", HTTPS="1")

    result = manage("check", "--deploy", "--fail-level", "WARNING", **production)
    plain_http = manage("check", "--deploy", "--fail-level", "WARNING", **{**production, "HTTPS": "0"})

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    # The check can fail: without HTTPS=1 it names what is missing.
    assert plain_http.returncode != 0 and "SECURE_SSL_REDIRECT" in plain_http.stdout + plain_http.stderr


def test_defaults_run_with_no_configuration():
    result = manage("check")

    assert result.returncode == 0, result.stderr


# --- task broker -------------------------------------------------------------------------------

_BROKER_PROBE = "from django_q.brokers import get_broker; b = get_broker(); print(type(b).__name__, b.ping())"


@pytest.fixture
def scratch_databases(tmp_path) -> dict[str, str]:
    """The ORM broker's ping opens the local database; point both aliases at scratch files."""
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'local.sqlite3'}",
        "CLOUD_DATABASE_URL": f"sqlite:///{tmp_path / 'cloud.sqlite3'}",
    }


def test_task_queue_uses_the_database_broker_by_default(scratch_databases):
    result = manage("shell", "-c", _BROKER_PROBE, **scratch_databases)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split()[0] == "ORM"


@pytest.mark.redis
def test_redis_url_switches_the_task_queue_to_redis(scratch_databases):
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError:
        skip_or_fail("Redis is not listening on 127.0.0.1:6379")

    result = manage("shell", "-c", _BROKER_PROBE, REDIS_URL=REDIS_URL, **scratch_databases)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == ["Redis", "True"]


# --- databases and router ----------------------------------------------------------------------

def _expected_alias(model) -> str:
    # A few staging models belong beside the cloud rows they describe (routers.CLOUD_MODELS).
    cloud_models = getattr(routers, "CLOUD_MODELS", set())
    if model._meta.app_label == "subscriptions" or model._meta.label_lower in cloud_models:
        return "cloud"
    return "default"


def test_router_sends_subscriptions_to_cloud_and_everything_else_to_default():
    router = routers.DatabaseRouter()

    assert router.allow_migrate("cloud", "subscriptions") is True
    assert router.allow_migrate("default", "subscriptions") is False
    for app_label in ("staging", "auth", "admin", "sessions", "contenttypes", "django_q", "apitokens"):
        assert router.allow_migrate("default", app_label) is True
        assert router.allow_migrate("cloud", app_label) is False
    for model in apps.get_models():
        assert router.db_for_read(model) == _expected_alias(model), model
        assert router.db_for_write(model) == _expected_alias(model), model


@pytest.mark.django_db(databases=BOTH_DATABASES)
def test_migrations_create_each_model_table_in_its_database_only():
    tables = {alias: {t.lower() for t in connections[alias].introspection.table_names()} for alias in BOTH_DATABASES}

    assert {"auth_user", "staging_schema", "django_q_ormq", "django_session"} <= tables["default"]
    for model in apps.get_models():
        if not model._meta.managed or model._meta.proxy:
            continue
        table = model._meta.db_table.lower()
        home = _expected_alias(model)
        other = "cloud" if home == "default" else "default"
        assert table in tables[home], f"{model._meta.label}: {table} missing from {home}"
        assert table not in tables[other], f"{model._meta.label}: {table} also created in {other}"


def test_sqlite_databases_are_tuned_for_concurrent_use():
    for alias in BOTH_DATABASES:
        connection = connections[alias]
        if connection.vendor != "sqlite":
            pytest.skip("SQLite tuning applies to SQLite databases only")
        options = connection.settings_dict["OPTIONS"]
        assert options["transaction_mode"] == "IMMEDIATE"
        assert "journal_mode=WAL" in options["init_command"]
        assert "synchronous=NORMAL" in options["init_command"]
        assert options["timeout"] >= 5


@pytest.mark.django_db(databases=BOTH_DATABASES)
def test_sqlite_connection_runs_in_wal_mode():
    connection = connections["default"]
    if connection.vendor != "sqlite":
        pytest.skip("SQLite tuning applies to SQLite databases only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0].lower() == "wal"
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == 1  # NORMAL


# --- ensure_admin ------------------------------------------------------------------------------

def _ensure_admin(monkeypatch, **env: str) -> str:
    for name in ("ADMIN_USERNAME", "ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_ensure_admin_creates_admin_with_a_generated_password_printed_once(monkeypatch):
    first = _ensure_admin(monkeypatch)

    password = re.search(r"generated password:\s+(\S+)", first).group(1)
    user = authenticate(username="admin", password=password)
    assert user is not None and user.is_superuser and user.is_staff

    second = _ensure_admin(monkeypatch)
    assert password not in second
    assert "exists" in second
    assert get_user_model().objects.filter(username="admin").count() == 1
    assert authenticate(username="admin", password=password) is not None


@pytest.mark.django_db
def test_ensure_admin_uses_admin_username_and_password_from_the_environment(monkeypatch):
    output = _ensure_admin(monkeypatch, ADMIN_USERNAME="operator", ADMIN_PASSWORD="a long chosen password")

    assert "a long chosen password" not in output
    assert authenticate(username="operator", password="a long chosen password").is_superuser


@pytest.mark.django_db
def test_ensure_admin_leaves_an_existing_account_and_its_password_alone(monkeypatch):
    get_user_model().objects.create_superuser(username="admin", email="", password="original password 1")

    output = _ensure_admin(monkeypatch, ADMIN_PASSWORD="another password 2")

    assert "left unchanged" in output
    assert authenticate(username="admin", password="original password 1") is not None
    assert authenticate(username="admin", password="another password 2") is None


@pytest.mark.django_db
def test_ensure_admin_adds_no_second_superuser_when_one_was_chosen_already(monkeypatch):
    get_user_model().objects.create_superuser(username="alice", email="", password="alice password 1")

    output = _ensure_admin(monkeypatch)

    assert "'alice' exists" in output
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["alice"]
