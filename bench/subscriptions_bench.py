"""Subscriptions: N opt-in requests staged in nms:subscriptionRcpStg, then processed by
`subscriptions.services.subscriptions_process` (recipients looked up in the cloud, one subscription
and one history row each, outcomes recorded in staging). Rows/s of the processing.

Baseline, same run: the writes the processing cannot avoid, pre-computed and sent with raw
`executemany`: N subscription rows and N history rows into the cloud tables, and N status updates
of the request rows in staging.
"""

import time
from datetime import timedelta

SERVICE = "bench-newsletter"


def _recipients_table():
    from staging import ddl
    from staging.models import Schema

    description = Schema.objects.get(namespace="nms", name="recipient").description
    return description, ddl.quote(description.sql_table, _cloud().vendor)


def _cloud():
    from django.db import connections

    from staging import ddl

    return connections[ddl.CLOUD]


def clear() -> None:
    """Remove what a run left: subscriptions, history, the service, recipients, staged requests, runs."""
    from django.db import connections, transaction

    from staging import ddl
    from staging.models import Schema, SyncRun
    from subscriptions.models import Service, Subscription, SubscriptionHistory
    from subscriptions.services import REQUEST_SCHEMA

    Subscription.objects.using(ddl.CLOUD).all().delete()
    SubscriptionHistory.objects.using(ddl.CLOUD).all().delete()
    Service.objects.using(ddl.CLOUD).filter(name=SERVICE).delete()
    _, recipients = _recipients_table()
    with transaction.atomic(using=ddl.CLOUD), _cloud().cursor() as cursor:
        cursor.execute(f"DELETE FROM {recipients}")
    local = connections[ddl.LOCAL]
    requests = Schema.objects.get(namespace="nms", name="subscriptionRcp").description.staging_table
    with transaction.atomic(using=ddl.LOCAL), local.cursor() as cursor:
        cursor.execute(f"DELETE FROM {ddl.quote(requests, local.vendor)}")
    SyncRun.objects.filter(schema=REQUEST_SCHEMA).delete()


def prepare(user, n: int):
    """A service, n recipients in the cloud and one staged opt-in request for each (not timed)."""
    from django.db import transaction

    from staging import ddl
    from staging.records import RecordInput
    from staging.services import records_ingest
    from subscriptions.models import Service
    from subscriptions.services import REQUEST_STAGING_ID

    clear()
    service = Service.objects.using(ddl.CLOUD).create(name=SERVICE, label="Benchmark newsletter")
    description, recipients = _recipients_table()
    cloud = _cloud()
    q = lambda name: ddl.quote(name, cloud.vendor)  # noqa: E731
    id_col, email_col = (q(description.attribute(name).sql_name) for name in ("id", "email"))
    with transaction.atomic(using=ddl.CLOUD), cloud.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {recipients} ({id_col}, {email_col}) VALUES (%s, %s)",
                           [(f"bench-recipient-{i}", f"r{i}@example.com") for i in range(n)])
    records = [RecordInput(values={"recipient-id": f"bench-recipient-{i}", "service": SERVICE}, key=None,
                           operation=None) for i in range(n)]
    records_ingest(schema_id=REQUEST_STAGING_ID, records=records, user=user)
    return service


def process(user, n: int) -> float:
    """Seconds for subscriptions_process over n staged opt-ins; every one becomes a subscription."""
    from campaignsite.permissions import SYSTEM
    from staging.models import SyncRun
    from subscriptions.models import Subscription
    from subscriptions.services import subscriptions_process

    prepare(user, n)
    started = time.perf_counter()
    run = subscriptions_process(user=SYSTEM, trigger=SyncRun.Trigger.COMMAND)
    elapsed = time.perf_counter() - started
    assert run.inserted == n and Subscription.objects.count() == n, (run.status, run.inserted, run.error)
    clear()
    return elapsed


def _raw_insert(model, objects, connection):
    """(sql, params) inserting `objects` as Django would store them, without the ORM per row."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    q = connection.ops.quote_name
    sql = (f"INSERT INTO {q(model._meta.db_table)} ({', '.join(q(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))})")
    params = [[f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields] for obj in objects]
    return sql, params


def raw_writes(user, n: int) -> float:
    """Seconds to write n subscriptions, n history rows and n request outcomes with raw executemany."""
    from django.db import connections, transaction
    from django.utils import timezone

    from staging import ddl
    from staging.models import Schema
    from subscriptions.models import Subscription, SubscriptionHistory

    service = prepare(user, n)
    now = timezone.now()
    subscriptions = [Subscription(recipient_id=f"bench-recipient-{i}", email=f"r{i}@example.com", service=service,
                                  created=now, status=Subscription.Status.ACTIVE, expires=now + timedelta(days=365))
                     for i in range(n)]
    history = [SubscriptionHistory(recipient_id=s.recipient_id, email=s.email, service=service,
                                   service_name=SERVICE, action=SubscriptionHistory.Action.SUBSCRIBE, at=now,
                                   request_id=str(i)) for i, s in enumerate(subscriptions)]
    cloud, local = _cloud(), connections[ddl.LOCAL]
    subscription_sql, subscription_params = _raw_insert(Subscription, subscriptions, cloud)
    history_sql, history_params = _raw_insert(SubscriptionHistory, history, cloud)
    requests = ddl.quote(Schema.objects.get(namespace="nms", name="subscriptionRcp").description.staging_table,
                         local.vendor)
    lq = lambda name: ddl.quote(name, local.vendor)  # noqa: E731
    with local.cursor() as cursor:
        cursor.execute(f"SELECT {lq(ddl.COL_SEQ)} FROM {requests}")
        seqs = [row[0] for row in cursor.fetchall()]
    synced_at = now.replace(tzinfo=None).isoformat(" ") if local.vendor == ddl.SQLITE else now
    outcome_sql = (f"UPDATE {requests} SET {lq(ddl.COL_STATUS)} = %s, {lq(ddl.COL_SYNCED_AT)} = %s "
                   f"WHERE {lq(ddl.COL_SEQ)} = %s")
    outcome_params = [(ddl.STATUS_SYNCED, synced_at, seq) for seq in seqs]
    started = time.perf_counter()
    with transaction.atomic(using=ddl.CLOUD), cloud.cursor() as cursor:
        cursor.executemany(subscription_sql, subscription_params)
        cursor.executemany(history_sql, history_params)
    with transaction.atomic(using=ddl.LOCAL), local.cursor() as cursor:
        cursor.executemany(outcome_sql, outcome_params)
    elapsed = time.perf_counter() - started
    clear()
    return elapsed
