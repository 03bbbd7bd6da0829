"""Every service that writes checks its permission itself: None (nobody authenticated) is refused, a
user needs the permission, SYSTEM (commands, scheduled tasks) may do everything. Refused calls change
nothing."""

import pytest
from django.db import connections

from campaignsite.errors import Forbidden, Unauthenticated
from campaignsite.permissions import SYSTEM
from staging import services, sync
from staging.models import Schema, SyncRun
from subscriptions import services as subscription_services
from tests.conftest import BOTH_DATABASES

from .conftest import SAMPLE_SOURCE, make_user, staged_schema
from .test_srcschema import schema_xml

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)


def failed_rows(count: int = 2) -> list[tuple]:
    with connections["default"].cursor() as cursor:
        cursor.executemany("INSERT INTO DemSampleTableStg (uSampleTableId, sStgOperation, mStgColumns, sStgKey, "
                           "sStgStatus, mStgError) VALUES (%s, 'insert', '', 'id', 'failed', 'duplicate key')",
                           [(f"k{i}",) for i in range(count)])
        cursor.execute("SELECT uSampleTableId, sStgStatus FROM DemSampleTableStg ORDER BY iStgSeq")
        return cursor.fetchall()


def staged() -> list[tuple]:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT uSampleTableId, sStgStatus FROM DemSampleTableStg ORDER BY iStgSeq")
        return cursor.fetchall()


@pytest.fixture
def sample():
    return staged_schema(SAMPLE_SOURCE)


@pytest.mark.parametrize("service", [sync.failed_rows_retry, sync.failed_rows_discard])
def test_failed_rows_services_refuse_nobody_and_users_without_run_sync_and_change_nothing(sample, service):
    before = failed_rows()
    viewer = make_user("viewer", "view_schema")

    with pytest.raises(Unauthenticated):
        service(schema=sample, user=None)
    with pytest.raises(Forbidden) as refused:
        service(schema=sample, user=viewer)

    assert "staging.run_sync" in str(refused.value.problems[0])
    assert staged() == before


@pytest.mark.parametrize("service, after", [(sync.failed_rows_retry, "pending"), (sync.failed_rows_discard, None)])
def test_failed_rows_services_act_for_a_user_with_run_sync(sample, service, after):
    failed_rows()

    assert service(schema=sample, user=make_user("operator", "run_sync")) == 2
    assert staged() == ([] if after is None else [("k0", after), ("k1", after)])


def refused_calls(schema: Schema):
    """(name, call(user)) for every service that writes on someone's behalf."""
    source = schema_xml(name="other")
    return [
        ("schema_create", lambda user: services.schema_create(source=source, user=user)),
        ("schema_update", lambda user: services.schema_update(schema=schema, source=schema.source, user=user)),
        ("schema_load", lambda user: services.schema_load(source=schema.source, user=user)),
        ("schema_delete", lambda user: services.schema_delete(schema=schema, user=user)),
        ("schema_set_auto_stg", lambda user: services.schema_set_auto_stg(schema=schema, enabled=False, user=user)),
        ("structure_update", lambda user: services.structure_update(schema=schema, user=user)),
        ("builtin_schemas_load", lambda user: services.builtin_schemas_load(user=user)),
        ("staging_sync", lambda user: sync.staging_sync(schema=schema, trigger="command", user=user)),
        ("staging_sync_all", lambda user: sync.staging_sync_all(trigger="command", user=user)),
        ("sync_enqueue", lambda user: sync.sync_enqueue(schema=schema.schema_id, trigger="api", user=user)),
        ("staging_purge", lambda user: sync.staging_purge(user=user)),
        ("subscriptions_process", lambda user: subscription_services.subscriptions_process(user=user)),
        ("subscriptions_expire", lambda user: subscription_services.subscriptions_expire(user=user)),
    ]


def test_every_writing_service_refuses_nobody_and_a_user_without_its_permission(sample):
    nobody_may = make_user("reader", "view_schema", "view_syncrun")
    source_before = sample.source

    for name, call in refused_calls(sample):
        with pytest.raises(Unauthenticated):
            call(None)
        with pytest.raises(Forbidden):
            call(nobody_may)

    assert list(Schema.objects.values_list("namespace", "name")) == [("dem", "sampleTable")]
    sample.refresh_from_db()
    assert sample.source == source_before and sample.auto_stg
    assert not SyncRun.objects.exists()


def test_system_may_call_the_services_commands_and_tasks_use(sample):
    run = sync.staging_sync(schema=sample, trigger="command", user=SYSTEM)
    schema = services.schema_set_auto_stg(schema=sample, enabled=False, user=SYSTEM)

    assert run.status == "succeeded"
    assert not schema.auto_stg and schema.modified_by is None
