"""Database structure updates applied to the real databases (SQLite, or PostgreSQL in CI's second leg)."""

import pytest
from django.db import IntegrityError, connections, transaction

from campaignsite.errors import SchemaInvalid, StructureRefused, TooLarge
from campaignsite.permissions import SYSTEM
from staging import ddl, services
from staging.models import Schema, StructureState
from tests.conftest import BOTH_DATABASES

from .test_srcschema import schema_xml, seed_schemas

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)


def columns_of(alias: str, table: str) -> list[str] | None:
    state = ddl.inspect_table(connections[alias], table)
    return None if state is None else sorted(state.columns)


def execute(alias: str, sql: str, params=()):
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


@pytest.fixture
def sample() -> Schema:
    schema = services.schema_create(user=SYSTEM, source=seed_schemas()[0])
    services.structure_update(user=SYSTEM, schema=schema)
    return schema


def staged(schema: Schema) -> Schema:
    schema = services.schema_set_auto_stg(user=SYSTEM, schema=schema, enabled=True)
    services.structure_update(user=SYSTEM, schema=schema)
    return schema


def test_seed_flow_creates_cloud_then_staging_table_with_campaign_columns(sample):
    assert columns_of("cloud", "DemSampleTable") == ["stestcol1", "stestcol2", "usampletableid"]
    assert columns_of("default", "DemSampleTableStg") is None

    staged(sample)

    assert columns_of("default", "DemSampleTableStg") == sorted([
        "istgseq", "usampletableid", "stestcol1", "stestcol2", "idelete", "tslastmodified", "sstgoperation", "sstgkey",
        "mstgcolumns", "sstgstatus", "istgattempts", "mstgerror", "tsstgsynced", "istgversion",
    ])
    assert columns_of("cloud", "DemSampleTableStg") is None  # staging lives in the local database only


def test_tables_can_be_queried_with_unquoted_campaign_names(sample):
    staged(sample)
    execute("cloud", "INSERT INTO DemSampleTable (uSampleTableId, sTestcol1) VALUES ('ABC12345', 'a')")
    execute("default", "INSERT INTO DemSampleTableStg (uSampleTableId, sTestcol1) VALUES ('ABC12345', 'b')")

    assert execute("cloud", "SELECT sTestcol1 FROM DemSampleTable WHERE uSampleTableId = 'ABC12345'") == [("a",)]
    assert execute("default", "SELECT sTestcol1, sStgStatus, iDelete, iStgVersion FROM DemSampleTableStg") == [
        ("b", "pending", 0, 1)
    ]


def test_applying_twice_changes_nothing(sample):
    schema = staged(sample)

    second = services.structure_update(user=SYSTEM, schema=schema)

    assert second.is_empty
    assert schema.structure_state == StructureState.UP_TO_DATE


def test_structure_state_follows_the_source(sample):
    fresh = services.schema_create(user=SYSTEM, source=schema_xml('<attribute name="a" type="string"/>'))
    assert fresh.structure_state == StructureState.NEVER_APPLIED
    assert sample.structure_state == StructureState.UP_TO_DATE

    changed = services.schema_set_auto_stg(user=SYSTEM, schema=sample, enabled=True)

    assert changed.structure_state == StructureState.NEEDS_UPDATE


def test_adding_an_attribute_adds_the_column_and_keeps_rows(sample):
    schema = staged(sample)
    execute("cloud", "INSERT INTO DemSampleTable (uSampleTableId, sTestcol1) VALUES ('k1', 'kept')")
    source = schema.source.replace(
        '<attribute label="Test Col 2"', '<attribute name="score" type="long"/>\n        <attribute label="Test Col 2"')
    schema = services.schema_update(user=SYSTEM, schema=schema, source=source)

    plan = services.structure_update(user=SYSTEM, schema=schema)

    assert {s.kind for s in plan.statements} == {"add_column"}
    assert execute("cloud", "SELECT sTestcol1, iScore FROM DemSampleTable") == [("kept", 0)]
    assert "iscore" in columns_of("default", "DemSampleTableStg")


def test_dropping_an_attribute_needs_confirmation_then_keeps_other_data(sample):
    execute("cloud", "INSERT INTO DemSampleTable (uSampleTableId, sTestcol1, sTestcol2) VALUES ('k1', 'a', 'b')")
    source = sample.source.replace('<attribute label="Test Col 2" length="255" name="testcol2" type="string"/>', "")
    schema = services.schema_update(user=SYSTEM, schema=sample, source=source)

    with pytest.raises(StructureRefused) as excinfo:
        services.structure_update(user=SYSTEM, schema=schema)
    assert "confirm" in excinfo.value.message
    assert columns_of("cloud", "DemSampleTable") == ["stestcol1", "stestcol2", "usampletableid"]

    services.structure_update(user=SYSTEM, schema=schema, confirm_destructive=True)

    assert columns_of("cloud", "DemSampleTable") == ["stestcol1", "usampletableid"]
    assert execute("cloud", "SELECT uSampleTableId, sTestcol1 FROM DemSampleTable") == [("k1", "a")]


def test_changing_a_type_needs_confirmation_and_converts_the_column(sample):
    execute("cloud", "INSERT INTO DemSampleTable (uSampleTableId, sTestcol2) VALUES ('k1', '42')")
    source = sample.source.replace('length="255" name="testcol2" type="string"', 'name="testcol2" type="long"')
    source = source.replace('name="testcol2" type="long"', 'name="testcol2" type="long" sqlname="sTestcol2"')
    schema = services.schema_update(user=SYSTEM, schema=sample, source=source)

    with pytest.raises(StructureRefused):
        services.structure_update(user=SYSTEM, schema=schema)
    services.structure_update(user=SYSTEM, schema=schema, confirm_destructive=True)

    assert execute("cloud", "SELECT sTestcol2 FROM DemSampleTable") == [(42,)]
    assert services.structure_plan(schema=schema).is_empty


def test_staging_off_is_refused_while_rows_wait_and_says_how_many(sample):
    schema = staged(sample)
    for key, status in (("a", "pending"), ("b", "pending"), ("c", "failed"), ("d", "synced")):
        execute("default", "INSERT INTO DemSampleTableStg (uSampleTableId, sStgStatus) VALUES (%s, %s)", (key, status))
    schema = services.schema_set_auto_stg(user=SYSTEM, schema=schema, enabled=False)

    with pytest.raises(StructureRefused) as excinfo:
        services.structure_update(user=SYSTEM, schema=schema)

    assert "3 row(s) of dem:sampleTableStg are not synchronized yet" in excinfo.value.message
    assert "sync_staging dem:sampleTable" in excinfo.value.detail
    assert columns_of("default", "DemSampleTableStg") is not None


def test_staging_off_drops_the_table_once_everything_is_synced(sample):
    schema = staged(sample)
    execute("default", "INSERT INTO DemSampleTableStg (uSampleTableId, sStgStatus) VALUES ('a', 'synced')")
    schema = services.schema_set_auto_stg(user=SYSTEM, schema=schema, enabled=False)

    plan = services.structure_update(user=SYSTEM, schema=schema)

    assert [s.kind for s in plan.statements] == ["drop_table"]
    assert columns_of("default", "DemSampleTableStg") is None
    assert columns_of("cloud", "DemSampleTable") is not None


def test_keys_are_unique_in_both_tables():
    schema = services.schema_create(user=SYSTEM, source=schema_xml(
        '<key name="email"><keyfield xpath="@email"/></key><attribute name="email" type="string"/>',
        element_attrs='autopk="true" autouuid="true" autoStg="true"',
    ))
    services.structure_update(user=SYSTEM, schema=schema)

    for alias, table in (("cloud", "CusThing"), ("default", "CusThingStg")):
        key = "uThingId"
        execute(alias, f"INSERT INTO {table} ({key}, sEmail) VALUES ('1', 'a@example.com')")
        with pytest.raises(IntegrityError), transaction.atomic(using=alias):
            execute(alias, f"INSERT INTO {table} ({key}, sEmail) VALUES ('2', 'a@example.com')")


def test_set_auto_stg_rewrites_only_the_flag_in_the_source(sample):
    original = sample.source

    schema = services.schema_set_auto_stg(user=SYSTEM, schema=sample, enabled=True)

    assert schema.source == original.replace("<element autopk=", '<element autoStg="true" autopk=', 1)
    off = services.schema_set_auto_stg(user=SYSTEM, schema=schema, enabled=False)
    assert 'autoStg="false"' in off.source and not off.auto_stg


def test_source_is_kept_verbatim():
    source = "<!-- my notes -->\n" + seed_schemas()[0]

    schema = services.schema_create(user=SYSTEM, source=source)

    assert Schema.objects.get(pk=schema.pk).source == source


def test_invalid_or_oversized_documents_save_nothing(settings):
    settings.SCHEMA_MAX_BYTES = 10_000
    with pytest.raises(SchemaInvalid):
        services.schema_create(user=SYSTEM, source=schema_xml('<attribute name="a" type="money"/>'))
    with pytest.raises(TooLarge):
        services.schema_create(user=SYSTEM, source=schema_xml(f'<attribute name="a" label="{"x" * 20_000}"/>'))

    assert not Schema.objects.exists()


def test_built_in_schemas_load_idempotently_with_their_tables():
    first = services.builtin_schemas_load(user=SYSTEM)
    again = services.builtin_schemas_load(user=SYSTEM)

    assert [s.schema_id for s in first] == ["nms:appSubscriptionRcp", "nms:recipient", "nms:subscriptionRcp"]
    assert [s.pk for s in again] == [s.pk for s in first]
    assert all(s.auto_stg and s.built_in and s.structure_state == StructureState.UP_TO_DATE for s in again)
    assert "iblacklist" in columns_of("cloud", "NmsRecipient")
    assert "semail" in columns_of("default", "NmsRecipientStg")
    assert "icreate" in columns_of("default", "NmsSubscriptionRcpStg")
    assert columns_of("default", "NmsAppSubscriptionRcpStg") is not None
