"""Shared fixtures.

External pieces (PostgreSQL, Redis, node, Chromium) skip with a reason when absent, unless
REQUIRE_SERVICES=1 (set by .ci/run), which turns the skip into a failure so CI always runs them.
"""

import os
import shutil

import pytest
from django.core.cache import cache
from django.db import connections

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
BOTH_DATABASES = ["default", "cloud"]


def skip_or_fail(reason: str):
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1 makes this mandatory)", pytrace=False)
    pytest.skip(reason)


def _django_tables(connection) -> set[str]:
    return {t.lower() for t in connection.introspection.django_table_names()} | {
        "django_migrations", "django_cache", "sqlite_sequence",
    }


@pytest.fixture(autouse=True)
def _drop_schema_tables(request, django_db_blocker):
    """Drop the tables `staging.ddl` created, which a transactional test's flush would leave behind."""
    yield
    marker = request.node.get_closest_marker("django_db")
    transactional = (
        (marker is not None and marker.kwargs.get("transaction"))
        or "transactional_db" in request.fixturenames
        or "live_server" in request.fixturenames
    )
    if not transactional:
        return  # plain `db` tests run in a transaction that is rolled back, DDL included
    with django_db_blocker.unblock():
        for alias in BOTH_DATABASES:
            connection = connections[alias]
            keep = _django_tables(connection)
            with connection.cursor() as cursor:
                for table in connection.introspection.table_names(cursor):
                    if table.lower() not in keep:
                        cursor.execute(f'DROP TABLE IF EXISTS "{table}"')
        # Nor does a flush empty the database cache, where the logon throttle counts failures.
        cache.clear()


@pytest.fixture
def vendor() -> str:
    return connections["default"].vendor


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if not path:
        skip_or_fail("Debian's chromium is not installed (apt-get install chromium)")
    return path



@pytest.fixture(scope="session", autouse=True)
def _end_stray_postgresql_sessions(django_db_setup, django_db_blocker):
    """Close what live-server request threads left open, so the test databases can be dropped.

    A keep-alive request thread can outlive the live server with its connection still open, and
    PostgreSQL refuses to drop a database that "is being accessed by other users".
    """
    yield
    with django_db_blocker.unblock():
        for alias in BOTH_DATABASES:
            connection = connections[alias]
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )


@pytest.fixture
def one_worker_site(tmp_path):
    """The site on gunicorn with ONE single-threaded worker over the test databases (tests/site.py).

    The rule for bad-input tests: send the bad input to this server, then good calls of every kind to the
    same worker, and assert they all succeed and that the bad input wrote nothing (docs/testing.md).
    """
    from tests.site import start_one_worker_site, stop_one_worker_site

    site = start_one_worker_site(tmp_path)
    yield site
    stop_one_worker_site(site)
