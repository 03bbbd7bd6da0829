"""Database helpers shared by the apps."""

import functools
import logging

from django.db import OperationalError

logger = logging.getLogger(__name__)

DEADLOCK_SQLSTATE = "40P01"  # PostgreSQL's deadlock_detected


def is_deadlock(error: BaseException) -> bool:
    return getattr(error.__cause__, "sqlstate", None) == DEADLOCK_SQLSTATE


def retry_on_deadlock(attempts: int = 4):
    """Run the decorated transaction again when PostgreSQL picks it as a deadlock victim.

    Ingest (IngestExt locks the staged rows it changes) and the sync's bookkeeping (one UPDATE over a
    batch of staged rows) can lock the same rows in different orders; PostgreSQL then aborts one of
    them. The aborted transaction wrote nothing, so running it again is safe. Other errors pass through.
    """

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            for attempt in range(1, attempts + 1):
                try:
                    return function(*args, **kwargs)
                except OperationalError as error:
                    if not is_deadlock(error) or attempt == attempts:
                        raise
                    logger.warning("%s lost a deadlock (attempt %d of %d); running it again",
                                   function.__qualname__, attempt, attempts)

        return wrapper

    return decorate


def database_url(alias: str) -> str:
    """A URL for the database `alias` is connected to now (a test database too), for a child process's
    DATABASE_URL / CLOUD_DATABASE_URL."""
    from urllib.parse import quote

    from django.db import connections

    conf = connections[alias].settings_dict
    if connections[alias].vendor == "sqlite":
        return f"sqlite:///{conf['NAME']}"
    credentials = quote(conf["USER"] or "", safe="")
    if conf.get("PASSWORD"):
        credentials += ":" + quote(conf["PASSWORD"], safe="")
    return f"postgres://{credentials}@{conf['HOST'] or '127.0.0.1'}:{conf['PORT'] or 5432}/{conf['NAME']}"
