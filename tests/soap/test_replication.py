"""nms:replicationStrategy#StartReplicateStagingData over real HTTP.

Campaign's `nms.replicationStrategy.StartReplicateStagingData("dem:sampleTable")` takes the source
schema id and starts the staging replication; here it queues a sync and answers at once.
"""

import pytest
from django.utils.module_loading import import_string
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from staging.models import SyncRun
from tests.conftest import BOTH_DATABASES
from tests.soap.conftest import doc_param, logon, make_user, sdk_envelope, staged_rows

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)

URN = "nms:replicationStrategy"


@pytest.fixture
def orm_broker(settings):
    if "redis" in settings.Q_CLUSTER:
        pytest.skip("reads the ORM broker's queue; REDIS_URL is set for this run")


@pytest.fixture
def replicator(soap):
    make_user("replicator", perms=("ingest", "run_sync"))
    return logon(soap, "replicator")


def start(soap, session, schema: str = "dem:sampleTable"):
    params = f'<schema xsi:type="xsd:string">{schema}</schema>' if schema is not None else ""
    return soap.post(sdk_envelope(URN, "StartReplicateStagingData", params, session_token=session.session_token,
                                  security_token=session.security_token), headers=session.headers)


def queued() -> list[dict]:
    return [SignedPackage.loads(item.payload) for item in OrmQ.objects.using("default").order_by("pk")]


def test_start_replicate_queues_a_sync_of_the_schema_and_answers_an_empty_response(soap, replicator, sample_schema,
                                                                                  orm_broker):
    answer = start(soap, replicator)

    assert answer.status == 200, answer.text
    assert answer.result("StartReplicateStagingData") == []
    assert ("<StartReplicateStagingDataResponse xmlns='urn:nms:replicationStrategy' SOAP-ENV:encodingStyle="
            "'http://schemas.xmlsoap.org/soap/encoding/'></StartReplicateStagingDataResponse>") in answer.text
    (task,) = queued()
    assert (task["func"], task["args"]) == ("staging.tasks.sync_schema", ("dem:sampleTable", "soap"))
    assert not SyncRun.objects.exists()  # queued, not run inside the call


def test_the_queued_replication_syncs_what_was_ingested_over_soap(soap, replicator, sample_schema, orm_broker):
    ingest = sdk_envelope("xtk:session", "Ingest",
                          doc_param('<sampleTableStg xtkschema="dem:sampleTableStg" testcol1="from soap"/>'),
                          session_token=replicator.session_token, security_token=replicator.security_token)
    assert soap.post(ingest, headers=replicator.headers).status == 200
    start(soap, replicator)
    (task,) = queued()

    import_string(task["func"])(*task["args"])  # what the cluster's worker does with it

    run = SyncRun.objects.get()
    assert (run.trigger, run.status, run.inserted) == ("soap", "succeeded", 1)
    assert [row["testcol1"] for row in staged_rows(sample_schema)] == ["from soap"]


def test_start_replicate_accepts_the_staging_schema_id_too(soap, replicator, sample_schema, orm_broker):
    assert start(soap, replicator, "dem:sampleTableStg").status == 200
    assert queued()[0]["args"] == ("dem:sampleTable", "soap")


def test_start_replicate_of_an_unknown_schema_is_a_fault(soap, replicator, sample_schema):
    answer = start(soap, replicator, "dem:nothing")

    assert answer.status == 500
    fault = answer.fault()
    assert fault["faultcode"] == "SOAP-ENV:Client"
    assert fault["faultstring"] == ("SOP-330011 Error while executing the method 'StartReplicateStagingData' of "
                                    "service 'nms:replicationStrategy'.")
    assert fault["detail"].startswith("CST-404000 Unknown schema 'dem:nothing'.")


def test_start_replicate_without_the_run_sync_permission_is_a_fault(soap, session, sample_schema):
    answer = start(soap, session)  # the `operator` of tests/soap/conftest.py may ingest, not sync

    fault = answer.fault()
    assert fault["detail"].startswith("CST-403000 User 'operator' may not start a synchronization")
    assert "staging.run_sync" in fault["detail"]


def test_start_replicate_without_a_schema_says_which_parameter_is_missing(soap, replicator, sample_schema):
    fault = start(soap, replicator, None).fault()
    assert "needs the schema to synchronize" in fault["detail"]


def test_start_replicate_without_a_session_is_refused(soap, sample_schema):
    answer = soap.post(sdk_envelope(URN, "StartReplicateStagingData", "<schema>dem:sampleTable</schema>"))
    assert answer.fault()["faultstring"].startswith("XSV-350008")


def test_the_wsdl_of_the_replication_strategy_lists_the_method(soap, db):
    answer = soap.get("/nl/jsp/schemawsdl.jsp?schema=nms:replicationStrategy")
    assert answer.status == 200
    assert 'soapAction="nms:replicationStrategy#StartReplicateStagingData"' in answer.text
