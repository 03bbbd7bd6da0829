"""Ingest semantics (docs/ingestion.md) through the services, on the database of the run (SQLite, or PostgreSQL in its CI leg)."""

import uuid
from datetime import date, datetime, time, timezone

import pytest
from django.db import connections

from campaignsite.errors import Conflict, Forbidden, InvalidInput, NotFound, TooLarge, Unauthenticated
from campaignsite.permissions import SYSTEM
from staging import ddl, services
from staging.services import records_ingest, records_ingest_ext, records_write
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import SAMPLE_SOURCE, record, rows_of

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

STG = "dem:sampleTableStg"


def ingest(user, *records, schema_id=STG):
    return records_ingest(schema_id=schema_id, records=list(records), user=user)


def ingest_ext(user, *records, schema_id=STG):
    return records_ingest_ext(schema_id=schema_id, records=list(records), user=user)


def cloud_rows(table: str, columns: str) -> list[tuple]:
    connection = connections["cloud"]
    vendor = connection.vendor
    cols = ", ".join(ddl.quote(c.strip(), vendor) for c in columns.split(","))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {cols} FROM {ddl.quote(table, vendor)} ORDER BY 1")
        return cursor.fetchall()


# --- Ingest ------------------------------------------------------------------------------------

def test_ingest_without_key_generates_and_returns_a_uuid(sample, ingester):
    result = ingest(ingester, record(testcol1="Test Value 1", testcol2="Test Value 2"))
    (generated,) = result.uuids
    assert uuid.UUID(generated)
    (row,) = rows_of(sample)
    assert row["id"] == generated
    assert row["values"]["testcol1"] == "Test Value 1"
    assert (row["status"], row["operation"], row["attempts"], row["version"]) == ("pending", "insert", 0, 1)
    assert row["columns"] == ["testcol1", "testcol2"]


def test_ingest_with_key_keeps_the_callers_id_and_returns_no_uuid(sample, ingester):
    result = ingest(ingester, record({"id": "ABC12345", "testcol1": "v"}, key="@id"))
    assert result.uuids == (None,)
    assert result.as_pstr() == ""
    assert [r["id"] for r in rows_of(sample)] == ["ABC12345"]


def test_ingest_of_an_already_staged_key_is_a_conflict_naming_it(sample, ingester):
    ingest(ingester, record({"id": "ABC12345"}, key="@id"))
    with pytest.raises(Conflict) as caught:
        ingest(ingester, record({"id": "NEW1"}, key="@id"), record({"id": "ABC12345", "testcol1": "x"}, key="@id"))
    (problem,) = caught.value.problems
    assert (problem.record, problem.value) == (1, "ABC12345")
    assert "already staged; use IngestExt to update" in problem.message
    assert [r["id"] for r in rows_of(sample)] == ["ABC12345"]  # NEW1 not written either


def test_ingest_reconciles_on_another_key_and_generates_the_id(typed, ingester):
    result = ingest(ingester, record({"email": "a@x.org"}, key="@email"), schema_id="dem:typedStg")
    assert uuid.UUID(result.uuids[0])
    with pytest.raises(Conflict) as caught:
        ingest(ingester, record({"email": "a@x.org", "code": "B"}, key="@email"), schema_id="dem:typedStg")
    assert caught.value.problems[0].attribute == "email"
    assert len(rows_of(typed)) == 1


def test_ingest_of_a_key_repeated_in_one_call_is_refused(sample, ingester):
    with pytest.raises(InvalidInput) as caught:
        ingest(ingester, record({"id": "K1"}, key="@id"), record({"id": "K1"}, key="@id"))
    assert caught.value.problems[0].record == 1
    assert rows_of(sample) == []


def test_ingest_collection_returns_uuids_in_document_order_with_empty_entries(sample, ingester):
    result = ingest(ingester, record(testcol1="a"), record({"id": "MINE", "testcol1": "b"}, key="@id"),
                    record(testcol1="c"))
    first, mine, third = result.uuids
    assert mine is None and uuid.UUID(first) and uuid.UUID(third)
    assert result.as_pstr() == f"{first},,{third}"
    assert [r["values"]["testcol1"] for r in rows_of(sample)] == ["a", "b", "c"]


def test_ingest_of_a_source_schema_id_names_xtkschema_and_the_staging_id(sample, ingester):
    with pytest.raises(InvalidInput) as caught:
        ingest(ingester, record(testcol1="a"), schema_id="dem:sampleTable")
    problem = caught.value.problems[0]
    assert problem.attribute == "xtkschema"
    assert "dem:sampleTableStg" in problem.message


def test_ingest_of_an_unknown_schema_is_not_found(sample, ingester):
    with pytest.raises(NotFound):
        ingest(ingester, record(testcol1="a"), schema_id="dem:nothingStg")


def test_ingest_with_staging_off_is_a_conflict_saying_to_enable_it(ingester):
    services.structure_update(user=SYSTEM, schema=services.schema_create(user=SYSTEM, source=SAMPLE_SOURCE))
    with pytest.raises(Conflict) as caught:
        ingest(ingester, record(testcol1="a"))
    assert "autoStg" in caught.value.detail


def test_ingest_with_an_outdated_structure_is_a_conflict_saying_to_update_it(sample, ingester):
    services.schema_update(user=SYSTEM, schema=sample, source=sample.source.replace(
        '<attribute label="Test Col 2"', '<attribute name="testcol3" type="string"/><attribute label="Test Col 2"'))
    with pytest.raises(Conflict) as caught:
        ingest(ingester, record(testcol1="a"))
    assert "update the database structure" in caught.value.detail


def test_ingest_without_the_permission_is_forbidden(sample, nobody):
    with pytest.raises(Forbidden) as caught:
        ingest(nobody, record(testcol1="a"))
    assert "staging.ingest" in caught.value.detail
    assert rows_of(sample) == []


def test_ingest_without_a_user_is_unauthenticated(sample):
    with pytest.raises(Unauthenticated):
        ingest(None, record(testcol1="a"))


def test_ingest_of_more_records_than_the_limit_is_too_large(sample, ingester, settings):
    settings.INGEST_MAX_RECORDS = 2
    with pytest.raises(TooLarge):
        ingest(ingester, *[record(testcol1=str(i)) for i in range(3)])
    assert rows_of(sample) == []


def test_ingest_refuses_update_operations(sample, ingester):
    with pytest.raises(InvalidInput) as caught:
        ingest(ingester, record({"id": "A"}, key="@id", op="update"))
    assert caught.value.problems[0].attribute == "_operation"


# --- Strict input: the whole call is refused, listing every bad record ---------------------------

def test_unknown_attribute_is_named_with_the_accepted_ones(sample, ingester):
    with pytest.raises(InvalidInput) as caught:
        ingest(ingester, record(testcol1="a", colour="blue"))
    problem = caught.value.problems[0]
    assert (problem.record, problem.attribute, problem.value) == (0, "colour", "blue")
    assert "testcol1, testcol2" in problem.message


def test_too_long_string_is_refused_not_truncated(typed, ingester):
    with pytest.raises(InvalidInput) as caught:
        ingest(ingester, record(code="123456"), schema_id="dem:typedStg")
    assert "at most 5" in caught.value.problems[0].message
    assert rows_of(typed) == []


def test_collection_with_one_bad_record_writes_nothing_and_lists_every_bad_record(typed, ingester):
    records = [record(code="ok"), record(tiny="300"), record(code="fine"), record(flag="maybe", count="x")]
    with pytest.raises(InvalidInput) as caught:
        ingest(ingester, *records, schema_id="dem:typedStg")
    bad = [(p.record, p.attribute) for p in caught.value.problems]
    assert bad == [(1, "tiny"), (3, "flag"), (3, "count")]
    assert rows_of(typed) == []


@pytest.mark.parametrize("attribute, value", [
    ("flag", "yes"), ("tiny", "128"), ("tiny", "-129"), ("small", "40000"), ("count", "2147483648"),
    ("big", "9223372036854775808"), ("count", "1.5"), ("amount", "abc"), ("ratio", "1e39"), ("amount", "nan"),
    ("born", "22/11/2026"), ("born", "2026-11-22 10:00:00"), ("seen", "yesterday"), ("opens", "25:00"),
    ("ref", "not-a-uuid"), ("color", "blue"), ("count", ""), ("flag", None),
])
def test_values_that_do_not_fit_the_type_are_refused(typed, ingester, attribute, value):
    with pytest.raises(InvalidInput) as caught:
        ingest(ingester, record({attribute: value}), schema_id="dem:typedStg")
    (problem,) = caught.value.problems
    assert (problem.record, problem.attribute, problem.value) == (0, attribute, value)


def test_values_are_stored_typed(typed, ingester):
    ingest(ingester, record(
        email="a@x.org", flag="true", tiny="-128", small="32767", count="-5", big="9223372036854775807",
        ratio="1.5", amount="-2.25", born="2026-11-22", seen="2026-11-22 10:52:27.000Z",
        local="2026-11-22T10:52:27", opens="08:30:00", ref="E1E7C8B3-6F79-44DA-A72D-49ED0F73DB2C", color="green",
        note="x" * 5000,
    ), schema_id="dem:typedStg")
    (row,) = rows_of(typed)
    values = row["values"]
    assert values["flag"] is True and values["tiny"] == -128 and values["big"] == 9223372036854775807
    assert values["amount"] == -2.25 and values["ratio"] == 1.5
    assert values["born"] == date(2026, 11, 22)
    assert values["seen"] == datetime(2026, 11, 22, 10, 52, 27, tzinfo=timezone.utc)
    assert values["local"] == datetime(2026, 11, 22, 10, 52, 27)
    assert values["opens"] == time(8, 30)
    assert values["ref"] == "e1e7c8b3-6f79-44da-a72d-49ed0f73db2c"
    assert values["color"] == "G"  # an enumeration value may be sent by name
    assert len(values["note"]) == 5000


def test_datetimes_with_an_offset_are_stored_in_utc_and_compare_correctly(typed, ingester):
    ingest(ingester, record(email="a", seen="2026-11-22T12:00:00+02:00"),
           record(email="b", seen="2026-11-22 10:30:00.000Z"), schema_id="dem:typedStg")
    table, column = typed.description.staging_table, typed.description.attribute("seen").sql_name
    connection = connections["default"]
    q = lambda n: ddl.quote(n, connection.vendor)  # noqa: E731
    earliest = datetime(2026, 11, 22, 10, 15, tzinfo=timezone.utc)
    param = earliest if connection.vendor == "postgresql" else "2026-11-22 10:15:00.000000"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {q('sEmail')} FROM {q(table)} WHERE {q(column)} > %s", [param])
        assert [r[0] for r in cursor.fetchall()] == ["b"]
    seen = {r["values"]["email"]: r["values"]["seen"] for r in rows_of(typed)}
    assert seen["a"] == datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)


# --- IngestExt ---------------------------------------------------------------------------------

def test_ingest_ext_updates_a_staged_key_in_place_and_keeps_absent_attributes(sample, ingester):
    ingest(ingester, record({"id": "ABC12345", "testcol1": "A", "testcol2": "B"}, key="@id"))
    ingest_ext(ingester, record({"id": "ABC12345", "testcol1": "A (updated)"}, key="@id"))
    (row,) = rows_of(sample)
    assert row["values"] == {"id": "ABC12345", "testcol1": "A (updated)", "testcol2": "B"}
    assert row["operation"] == "insert"  # insert + update: still an insert, with merged values
    assert row["columns"] == ["id", "testcol1", "testcol2"]
    assert row["version"] == 2


def test_ingest_ext_key_defaults_to_the_primary_key(sample, ingester):
    ingest_ext(ingester, record({"id": "K", "testcol1": "one"}))
    result = ingest_ext(ingester, record({"id": "K", "testcol2": "two"}))
    assert result.uuids == (None,)
    (row,) = rows_of(sample)
    assert row["values"] == {"id": "K", "testcol1": "one", "testcol2": "two"}
    assert row["operation"] == "insertOrUpdate"
    assert row["columns"] == ["id", "testcol1", "testcol2"]


def test_ingest_ext_without_a_usable_key_is_refused(sample, ingester):
    with pytest.raises(InvalidInput) as caught:
        ingest_ext(ingester, record(testcol1="no key"))
    assert "no usable key" in caught.value.problems[0].message


def test_ingest_ext_makes_a_synced_or_failed_row_pending_again(sample, ingester):
    ingest_ext(ingester, record({"id": "K", "testcol1": "one"}))
    connection = connections["default"]
    q = lambda n: ddl.quote(n, connection.vendor)  # noqa: E731
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {q('DemSampleTableStg')} SET {q(ddl.COL_STATUS)} = 'failed', "
                       f"{q(ddl.COL_ATTEMPTS)} = 3, {q(ddl.COL_ERROR)} = 'boom'")
    ingest_ext(ingester, record({"id": "K", "testcol2": "two"}))
    (row,) = rows_of(sample)
    assert (row["status"], row["attempts"], row["error"]) == ("pending", 0, None)


def test_ingest_ext_after_a_synced_row_sends_only_the_new_columns(sample, ingester):
    ingest_ext(ingester, record({"id": "K", "testcol1": "one"}))
    connection = connections["default"]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {ddl.quote('DemSampleTableStg', connection.vendor)} SET "
                       f"{ddl.quote(ddl.COL_STATUS, connection.vendor)} = 'synced'")
    ingest_ext(ingester, record({"id": "K", "testcol2": "two"}, op="update"))
    (row,) = rows_of(sample)
    assert (row["operation"], row["columns"], row["status"]) == ("update", ["id", "testcol2"], "pending")
    assert row["values"]["testcol1"] == "one"  # kept in staging, but not resent


def test_ingest_ext_delete_needs_only_the_key_and_sets_the_delete_flag(sample, ingester):
    ingest(ingester, record({"id": "K", "testcol1": "one"}, key="@id"))
    ingest_ext(ingester, record({"id": "K"}, key="@id", op="delete"))
    (row,) = rows_of(sample)
    assert (row["operation"], row["delete"], row["status"]) == ("delete", True, "pending")


def test_ingest_ext_delete_with_other_attributes_is_refused(sample, ingester):
    with pytest.raises(InvalidInput) as caught:
        ingest_ext(ingester, record({"id": "K", "testcol1": "x"}, op="delete"))
    assert caught.value.problems[0].attribute == "testcol1"


def test_ingest_ext_of_an_unstaged_delete_stages_a_delete(sample, ingester):
    ingest_ext(ingester, record({"id": "GONE"}, op="delete"))
    (row,) = rows_of(sample)
    assert (row["id"], row["operation"], row["delete"]) == ("GONE", "delete", True)


def test_ingest_ext_delete_then_insert_or_update_keeps_only_the_new_columns(sample, ingester):
    ingest_ext(ingester, record({"id": "K", "testcol1": "one"}))
    ingest_ext(ingester, record({"id": "K"}, op="delete"))
    ingest_ext(ingester, record({"id": "K", "testcol2": "two"}))
    (row,) = rows_of(sample)
    assert (row["operation"], row["delete"], row["columns"]) == ("insertOrUpdate", False, ["id", "testcol2"])


def test_ingest_ext_insert_of_a_staged_key_is_a_conflict(sample, ingester):
    ingest_ext(ingester, record({"id": "K"}))
    with pytest.raises(Conflict):
        ingest_ext(ingester, record({"id": "K", "testcol1": "x"}, op="insert"))


def test_ingest_ext_merges_repeated_keys_of_one_call_in_order(sample, ingester):
    ingest_ext(ingester, record({"id": "K", "testcol1": "1", "testcol2": "1"}),
               record({"id": "K", "testcol1": "2"}), record({"id": "K", "testcol2": "3"}))
    (row,) = rows_of(sample)
    assert row["values"] == {"id": "K", "testcol1": "2", "testcol2": "3"}
    assert row["version"] == 1


def test_ingest_ext_on_another_key_updates_the_row_found_by_it(typed, ingester):
    created = ingest(ingester, record(email="a@x.org", code="A"), schema_id="dem:typedStg")
    result = ingest_ext(ingester, record({"email": "a@x.org", "count": "7"}, key="@email"),
                        record({"email": "new@x.org"}, key="@email"), schema_id="dem:typedStg")
    assert result.uuids[0] is None and result.ids[0] == created.uuids[0]
    assert uuid.UUID(result.uuids[1])
    rows = {r["values"]["email"]: r for r in rows_of(typed)}
    assert rows["a@x.org"]["values"]["code"] == "A" and rows["a@x.org"]["values"]["count"] == 7
    assert rows["new@x.org"]["id"] == result.uuids[1]


def test_ingest_ext_collection_is_all_or_nothing(sample, ingester):
    ingest_ext(ingester, record({"id": "K", "testcol1": "before"}))
    with pytest.raises(InvalidInput):
        ingest_ext(ingester, record({"id": "K", "testcol1": "after"}), record({"id": "L", "bad": "x"}))
    assert [r["values"]["testcol1"] for r in rows_of(sample)] == ["before"]


def test_ingest_ext_without_the_permission_is_forbidden(sample, writer):
    with pytest.raises(Forbidden):
        ingest_ext(writer, record({"id": "K"}))


# --- Write (straight to the cloud table) -----------------------------------------------------

def test_write_inserts_updates_partially_and_deletes_in_the_cloud_table(sample, writer):
    records_write(schema_id="dem:sampleTable", user=writer, records=[
        record({"id": "A", "testcol1": "a1", "testcol2": "a2"}), record({"id": "B", "testcol1": "b1"})])
    records_write(schema_id="dem:sampleTable", user=writer, records=[
        record({"id": "A", "testcol2": "a2 (updated)"}), record({"id": "B"}, op="delete"),
        record({"id": "C", "testcol1": "c"}, op="update")])
    assert cloud_rows("DemSampleTable", "uSampleTableId, sTestcol1, sTestcol2") == [("A", "a1", "a2 (updated)")]
    assert rows_of(sample) == []  # staging bypassed


def test_write_without_a_key_inserts_with_a_new_id(sample, writer):
    records_write(schema_id="dem:sampleTable", user=writer, records=[record(testcol1="x")])
    ((new_id, value),) = cloud_rows("DemSampleTable", "uSampleTableId, sTestcol1")
    assert uuid.UUID(new_id) and value == "x"


def test_write_works_without_staging(writer):
    services.structure_update(user=SYSTEM, schema=services.schema_create(user=SYSTEM, source=SAMPLE_SOURCE))
    records_write(schema_id="dem:sampleTable", user=writer, records=[record({"id": "A", "testcol1": "x"})])
    assert cloud_rows("DemSampleTable", "uSampleTableId") == [("A",)]


def test_write_of_a_staging_id_is_refused(sample, writer):
    with pytest.raises(InvalidInput) as caught:
        records_write(schema_id=STG, user=writer, records=[record({"id": "A"})])
    assert caught.value.problems[0].attribute == "xtkschema"


def test_write_needs_its_own_permission(sample, ingester):
    with pytest.raises(Forbidden) as caught:
        records_write(schema_id="dem:sampleTable", user=ingester, records=[record({"id": "A"})])
    assert "staging.write_cloud" in caught.value.detail


def test_write_insert_of_an_existing_key_is_a_conflict_and_writes_nothing(sample, writer):
    records_write(schema_id="dem:sampleTable", user=writer, records=[record({"id": "A", "testcol1": "x"})])
    with pytest.raises(Conflict):
        records_write(schema_id="dem:sampleTable", user=writer, records=[
            record({"id": "B"}, op="insert"), record({"id": "A"}, op="insert")])
    assert cloud_rows("DemSampleTable", "uSampleTableId") == [("A",)]


def test_ingest_writes_a_call_with_a_bounded_number_of_queries(sample, ingester, django_assert_max_num_queries):
    ingest(ingester, record({"id": "seed"}, key="@id"))
    records = [record({"id": f"K{i}", "testcol1": str(i)}, key="@id") for i in range(1200)]
    with django_assert_max_num_queries(12):
        ingest_ext(ingester, *records)
    assert len(rows_of(sample)) == 1201
