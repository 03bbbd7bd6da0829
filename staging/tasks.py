"""django-q2 entry points. Each takes names, never model instances (a queued pickle of a model goes
stale), and calls one service. The schedules that run them are declared in staging/schedules.py.
"""

import logging

from campaignsite.errors import NotFound
from campaignsite.permissions import SYSTEM
from staging import sync
from staging.models import SyncRun
from staging.services import schema_get

logger = logging.getLogger(__name__)


def _summary(run: SyncRun) -> dict:
    return {"run": run.pk, "schema": run.schema, "status": run.status, "sent": run.sent, "failed": run.failed,
            "error": run.error}


def sync_schema(schema_id: str, trigger: str) -> dict:
    """Synchronize one schema (queued by "Sync now", the REST API, SOAP StartReplicateStagingData).

    A run-level failure is recorded on the SyncRun and returned, not raised: the broker redelivering
    the task would only repeat what the next scheduled run does anyway.
    """
    try:
        schema = schema_get(schema_id=schema_id)
    except NotFound:
        logger.warning("Sync of %s skipped: the schema no longer exists", schema_id)
        return {"schema": schema_id, "status": "unknown schema"}
    return _summary(sync.staging_sync(schema=schema, trigger=trigger, user=SYSTEM))


def sync_all(trigger: str = SyncRun.Trigger.SCHEDULE) -> list[dict]:
    """Synchronize every staged schema, then process subscription requests.

    The subscription requests are staged rows too, so they are processed after they reached the cloud.
    """
    from subscriptions.tasks import process_subscriptions

    runs = [_summary(run) for run in sync.staging_sync_all(trigger=trigger, user=SYSTEM)]
    process_subscriptions(trigger=trigger)
    return runs


def purge_staging() -> dict[str, int]:
    """Daily retention: delete synced staged rows older than STAGING_RETENTION_DAYS."""
    deleted = sync.staging_purge(user=SYSTEM)
    logger.info("Staging retention purge deleted %s", deleted)
    return deleted
