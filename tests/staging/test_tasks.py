"""django-q2 entry points and the enqueue service, against the real databases and the ORM broker's queue.

The cluster itself runs in tests/staging/test_qcluster.py; here a task function is called as the
worker would call it, and a queued task is read back from the broker.
"""

import pickle

import pytest
from django.db import transaction
from django_q.brokers import get_broker
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from campaignsite.errors import Conflict, Forbidden, NotFound, Unauthenticated
from campaignsite.permissions import SYSTEM
from staging import services, sync, tasks
from staging.models import SyncRun
from staging.services import records_ingest
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import make_user, record, rows_of

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

STG = "dem:sampleTableStg"


@pytest.fixture(autouse=True)
def orm_broker(settings):
    if "redis" in settings.Q_CLUSTER:
        pytest.skip("these tests read the ORM broker's queue; REDIS_URL is set for this run")


@pytest.fixture
def operator():
    return make_user("operator", "run_sync")


@pytest.fixture
def enqueue(django_capture_on_commit_callbacks):
    """sync_enqueue as a request outside any transaction sees it: the on-commit hand-over runs."""

    def call(schema, trigger, user):
        with django_capture_on_commit_callbacks(using="default", execute=True):
            return sync.sync_enqueue(schema=schema, trigger=trigger, user=user)

    return call


def queued() -> list[dict]:
    """The task packages waiting in the ORM broker, oldest first."""
    return [SignedPackage.loads(item.payload) for item in OrmQ.objects.using("default").order_by("pk")]


def test_sync_schema_task_synchronizes_the_named_schema(sample, ingester):
    records_ingest(schema_id=STG, records=[record(testcol1="a"), record(testcol1="b")], user=ingester)

    result = tasks.sync_schema("dem:sampleTable", SyncRun.Trigger.API)

    assert (result["status"], result["sent"]) == ("succeeded", 2)
    run = SyncRun.objects.get(pk=result["run"])
    assert (run.schema, run.trigger) == ("dem:sampleTable", "api")
    assert {row["status"] for row in rows_of(sample)} == {"synced"}


def test_sync_schema_task_of_a_deleted_schema_ends_quietly(db):
    assert tasks.sync_schema("dem:gone", SyncRun.Trigger.API)["status"] == "unknown schema"
    assert not SyncRun.objects.exists()


def test_sync_all_task_synchronizes_every_staged_schema_as_the_schedule(sample, typed, ingester):
    records_ingest(schema_id=STG, records=[record(testcol1="a")], user=ingester)
    records_ingest(schema_id="dem:typedStg", records=[record(email="x@example.com")], user=ingester)

    results = tasks.sync_all()

    assert sorted((r["schema"], r["status"], r["sent"]) for r in results) == [
        ("dem:sampleTable", "succeeded", 1), ("dem:typed", "succeeded", 1),
    ]
    assert set(SyncRun.objects.values_list("trigger", flat=True)) == {"schedule"}


def test_purge_task_applies_the_retention_setting(sample, ingester, settings):
    settings.STAGING_RETENTION_DAYS = 0
    records_ingest(schema_id=STG, records=[record(testcol1="a")], user=ingester)
    tasks.sync_all()

    assert tasks.purge_staging() == {"dem:sampleTable": 1}
    assert rows_of(sample) == []


def test_enqueue_hands_a_named_task_to_the_broker_with_names_not_objects(sample, operator, enqueue):
    name = enqueue("dem:sampleTable", SyncRun.Trigger.API, operator)

    (task,) = queued()
    assert task["name"] == name
    assert (task["func"], task["args"]) == ("staging.tasks.sync_schema", ("dem:sampleTable", "api"))
    pickle.dumps(task["args"])  # plain values only


def test_enqueue_of_every_schema_queues_the_sync_all_task(sample, operator, enqueue):
    enqueue(None, SyncRun.Trigger.ADMIN, operator)

    (task,) = queued()
    assert (task["func"], task["args"]) == ("staging.tasks.sync_all", ("admin",))


def test_enqueue_waits_for_the_callers_transaction_to_commit(sample, operator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(using="default", execute=True) as callbacks:
        with transaction.atomic(using="default"):
            sync.sync_enqueue(schema="dem:sampleTable", trigger=SyncRun.Trigger.API, user=operator)
            assert queued() == []  # nothing reaches the broker before the commit
    assert len(callbacks) == 1
    assert len(queued()) == 1


def test_enqueue_inside_a_rolled_back_transaction_queues_nothing(sample, operator,
                                                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(using="default", execute=True) as callbacks:
        with pytest.raises(RuntimeError):
            with transaction.atomic(using="default"):
                sync.sync_enqueue(schema="dem:sampleTable", trigger=SyncRun.Trigger.API, user=operator)
                raise RuntimeError("the request failed after asking for a sync")
    assert callbacks == []
    assert queued() == []


def test_enqueue_resolves_the_staging_id_to_its_source_schema(sample, operator, enqueue):
    enqueue("dem:sampleTableStg", SyncRun.Trigger.SOAP, operator)

    assert queued()[0]["args"] == ("dem:sampleTable", "soap")


def test_enqueue_needs_the_run_sync_permission(sample, ingester):
    with pytest.raises(Forbidden) as caught:
        sync.sync_enqueue(schema="dem:sampleTable", trigger=SyncRun.Trigger.API, user=ingester)
    assert "staging.run_sync" in caught.value.detail
    assert queued() == []


def test_enqueue_needs_an_authenticated_user(sample):
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(Unauthenticated):
        sync.sync_enqueue(schema="dem:sampleTable", trigger=SyncRun.Trigger.API, user=AnonymousUser())


def test_enqueue_of_an_unknown_schema_is_not_found(db, operator):
    with pytest.raises(NotFound) as caught:
        sync.sync_enqueue(schema="dem:nothing", trigger=SyncRun.Trigger.API, user=operator)
    assert caught.value.problems[0].value == "dem:nothing"


def test_enqueue_of_a_schema_without_staging_is_refused_at_once(operator):
    from tests.staging.test_srcschema import seed_schemas

    schema = services.schema_create(user=SYSTEM, source=seed_schemas()[0])  # autoStg off
    services.structure_update(user=SYSTEM, schema=schema)

    with pytest.raises(Conflict) as caught:
        sync.sync_enqueue(schema=schema.schema_id, trigger=SyncRun.Trigger.API, user=operator)
    assert "autoStg is off" in caught.value.message
    assert queued() == []


def test_a_queued_task_runs_the_sync_when_a_worker_takes_it(sample, ingester, operator, enqueue):
    """What a cluster worker does with the package: call the function with its arguments."""
    from django.utils.module_loading import import_string

    records_ingest(schema_id=STG, records=[record(testcol1="a")], user=ingester)
    enqueue("dem:sampleTable", SyncRun.Trigger.API, operator)
    (task,) = queued()

    import_string(task["func"])(*task["args"])

    assert SyncRun.objects.get().status == "succeeded"
    assert get_broker().queue_size() == 1  # taking it off the queue is the cluster's part
