"""The pure record layer: reading documents, validating values, merging operations. No database."""

import uuid

import pytest

from campaignsite.errors import InvalidInput
from staging.records import (
    DELETE, INGEST, INGEST_EXT, INSERT, INSERT_OR_UPDATE, UPDATE, WRITE, RecordInput, collapse_rows,
    merge_operation, new_uuids, parse_key, records_from_csv, records_from_json, records_from_xml, uuid_factory, validate_records,
)
from staging.srcschema import parse_srcschema
from staging.xml import parse_xml
from tests.staging.conftest import SAMPLE_SOURCE, TYPED_SOURCE

SAMPLE = parse_srcschema(SAMPLE_SOURCE)
TYPED = parse_srcschema(TYPED_SOURCE)


def xml(text: str):
    return parse_xml(text, max_bytes=1_000_000)


def counter():
    numbers = iter(range(1000))
    return lambda: f"gen-{next(numbers)}"


def test_a_single_record_document_gives_its_schema_and_one_record():
    schema, records = records_from_xml(xml(
        '<sampleTableStg _key="@id" id="ABC12345" testcol1="v" xtkschema="dem:sampleTableStg"/>'))
    assert schema == "dem:sampleTableStg"
    assert records == [RecordInput(values={"id": "ABC12345", "testcol1": "v"}, key=("id",), operation=None, line=1)]


def test_a_collection_gives_every_record_with_its_line():
    schema, records = records_from_xml(xml(
        '<sampleTableStg-collection xtkschema="dem:sampleTableStg">\n'
        '  <sampleTableStg testcol1="a"/>\n'
        '  <sampleTableStg testcol1="b" _operation="delete" xtkschema="dem:sampleTableStg"/>\n'
        '</sampleTableStg-collection>'))
    assert schema == "dem:sampleTableStg"
    assert [(r.values, r.operation, r.line) for r in records] == [
        ({"testcol1": "a"}, None, 2), ({"testcol1": "b"}, "delete", 3)]


def test_a_collection_of_plain_records_gives_each_its_line_or_the_shared_one():
    # Records without technical attributes take the whole-collection path: same result.
    _, records = records_from_xml(xml('<x-collection>\n<x a="1"/>\n\n<x a="2" b=""/>\n</x-collection>'))
    assert records == [RecordInput({"a": "1"}, None, None, 2), RecordInput({"a": "2", "b": ""}, None, None, 4)]
    _, records = records_from_xml(xml('<x-collection><x a="1"/><x a="2"/></x-collection>'))
    assert [r.line for r in records] == [1, 1]


def test_a_collection_with_text_inside_a_record_is_refused():
    with pytest.raises(InvalidInput) as caught:
        records_from_xml(xml('<x-collection><x a="1"/><x a="2">text</x></x-collection>'))
    assert caught.value.problems[0].record == 1


def test_a_document_without_xtkschema_reports_none():
    assert records_from_xml(xml('<sampleTableStg testcol1="a"/>'))[0] is None


def test_a_collection_record_naming_another_schema_is_refused():
    with pytest.raises(InvalidInput) as caught:
        records_from_xml(xml('<x-collection xtkschema="dem:aStg"><x/><x xtkschema="dem:bStg"/></x-collection>'))
    assert (caught.value.problems[0].record, caught.value.problems[0].attribute) == (1, "xtkschema")


def test_child_elements_inside_a_record_become_path_named_values():
    _, (record,) = records_from_xml(xml('<sampleTableStg testcol1="a"><folder name="x"/></sampleTableStg>'))
    assert record.values == {"testcol1": "a", "folder/name": "x"}


def test_unknown_sub_element_values_are_refused_naming_record_and_path():
    _, records = records_from_xml(xml('<sampleTableStg testcol1="a"><folder name="x"/></sampleTableStg>'))
    rows, problems = validate_records(SAMPLE, records, mode=INGEST)
    assert [(p.record, p.attribute) for p in problems] == [(0, "folder/name")]


def test_keys_are_read_from_comma_separated_xpaths():
    assert parse_key("@email, [@folder-id]") == ("email", "folder-id")
    assert parse_key("@id") == ("id",)
    assert parse_key("location/@city") == ("location/city",)
    assert parse_key("location/city") == ("location/city",)  # not an XPath: kept, so validation can name it


def test_json_records_turn_scalars_into_text():
    (record,) = records_from_json({"count": 3, "flag": True, "none": None, "_key": "@id", "_operation": "update"})
    assert record == RecordInput(values={"count": "3", "flag": "true", "none": None}, key=("id",), operation="update")


def test_json_records_of_strings_are_taken_as_they_are_and_others_converted():
    assert records_from_json([{"a": "x", "b": None}, {}]) == [
        RecordInput({"a": "x", "b": None}, None, None), RecordInput({}, None, None)]
    assert records_from_json([{"a": "x"}, {"a": 1, "_key": "@a"}]) == [
        RecordInput({"a": "x"}, None, None), RecordInput({"a": "1"}, ("a",), None)]


def test_json_lists_are_refused_naming_record_and_path():
    with pytest.raises(InvalidInput) as caught:
        records_from_json([{"a": "ok"}, {"a": {"nested": [1]}}])
    assert (caught.value.problems[0].record, caught.value.problems[0].attribute) == (1, "a/nested")


def test_json_nested_objects_become_path_named_values_at_any_depth():
    (record,) = records_from_json([{"email": "a@x", "location": {"city": "Paris", "geo": {"lat": 48.8}},
                                    "company": {"_key": ["@name"], "name": "Acme"}}])
    assert record.values == {"email": "a@x", "location/city": "Paris", "location/geo/lat": "48.8",
                             "company/_key": "@name", "company/name": "Acme"}


def test_xml_sub_elements_at_any_depth_and_element_text_become_path_named_values():
    _, records = records_from_xml(xml(
        '<recipient-collection><recipient email="a@x"><location city="Paris"><geo lat="1"/></location>'
        '<desc><![CDATA[<p>Hi</p>]]></desc><company _key="@name" name="Acme"/></recipient>'
        '<recipient email="b@x"/></recipient-collection>'))
    assert [r.values for r in records] == [
        {"email": "a@x", "location/city": "Paris", "location/geo/lat": "1", "desc": "<p>Hi</p>",
         "company/_key": "@name", "company/name": "Acme"}, {"email": "b@x"}]


def test_an_empty_sub_element_sets_nothing():
    description = parse_srcschema('<srcSchema namespace="cus" name="p"><element name="p" autopk="true">'
                                  '<element name="location"><attribute name="city"/></element></element></srcSchema>')
    _, records = records_from_xml(xml('<p><location/></p>'))
    rows, problems = validate_records(description, records, mode=INGEST, make_id=counter())
    assert (problems, rows[0].supplied) == ([], ())


def test_a_repeated_sub_element_is_refused_naming_it():
    with pytest.raises(InvalidInput) as caught:
        records_from_xml(xml('<recipient><location city="a"/><location city="b"/></recipient>'))
    assert caught.value.problems[0].attribute == "location"


def test_csv_headers_name_sub_element_attributes_with_or_without_the_at_sign():
    (record,) = records_from_csv(["email,location/@city,location/zipCode", "a@x,Paris,75001"])
    assert record.values == {"email": "a@x", "location/city": "Paris", "location/zipCode": "75001"}


def test_json_items_must_be_objects():
    with pytest.raises(InvalidInput):
        records_from_json(["text"])


def test_validation_lists_every_problem_of_every_record():
    records = [RecordInput({"tiny": "999", "flag": "x"}, None, None), RecordInput({"code": "toolong"}, None, None)]
    rows, problems = validate_records(TYPED, records, mode=INGEST)
    assert rows == []
    assert [(p.record, p.attribute) for p in problems] == [(0, "tiny"), (0, "flag"), (1, "code")]


def test_plain_ingest_records_become_inserts_with_generated_ids_in_order():
    records = [RecordInput({"testcol1": "a", "testcol2": "b"}, None, None, 3), RecordInput({"testcol2": "c"}, None, None)]
    rows, problems = validate_records(SAMPLE, records, mode=INGEST, make_id=counter())
    assert problems == []
    assert [(r.index, r.values, r.supplied, r.key, r.operation, r.generated, r.line) for r in rows] == [
        (0, {"testcol1": "a", "testcol2": "b", "id": "gen-0"}, ("testcol1", "testcol2"), ("id",), INSERT, True, 3),
        (1, {"testcol2": "c", "id": "gen-1"}, ("testcol2",), ("id",), INSERT, True, None)]
    assert records[0].values == {"testcol1": "a", "testcol2": "b"}  # the record itself is left as it was


def test_each_string_is_held_to_its_own_length_and_empty_or_null_values_to_the_general_rules():
    fits = RecordInput({"email": "a-rather-long-address@example.com", "code": "ABCDE"}, None, None)
    rows, problems = validate_records(TYPED, [fits], mode=INGEST)
    assert problems == [] and rows[0].values["email"] == fits.values["email"]
    _, problems = validate_records(TYPED, [fits, RecordInput({"code": "ABCDEF"}, None, None)], mode=INGEST)
    assert [(p.record, p.attribute) for p in problems] == [(1, "code")]
    rows, problems = validate_records(TYPED, [RecordInput({"email": "", "code": None}, None, None)], mode=INGEST)
    assert problems == [] and (rows[0].values["email"], rows[0].values["code"]) == ("", None)


def test_generated_uuids_are_random_version_4_ids_as_text():
    ids = new_uuids(1000)
    assert len(set(ids)) == 1000
    for text in ids:
        value = uuid.UUID(text)
        assert (str(value), value.version, value.variant) == (text, 4, uuid.RFC_4122)
    assert new_uuids(0) == [] and len(new_uuids(1)) == 1
    make = uuid_factory(batch=16)
    assert len({make() for _ in range(100)}) == 100


def test_ingest_generates_an_id_only_when_none_is_supplied():
    rows, _ = validate_records(SAMPLE, [RecordInput({"testcol1": "a"}, None, None),
                                        RecordInput({"id": "X"}, ("id",), None)], mode=INGEST, make_id=counter())
    assert [(r.id, r.generated, r.supplied) for r in rows] == [("gen-0", True, ("testcol1",)), ("X", False, ("id",))]


def test_a_key_naming_an_unknown_attribute_is_refused():
    _, problems = validate_records(SAMPLE, [RecordInput({"id": "X"}, ("email",), None)], mode=INGEST_EXT)
    assert problems[0].attribute == "_key" and problems[0].value == "email"


def test_unknown_operations_are_refused_listing_the_accepted_ones():
    _, problems = validate_records(SAMPLE, [RecordInput({"id": "X"}, None, "upsert")], mode=INGEST_EXT)
    assert "insertOrUpdate" in problems[0].message


def test_the_delete_flag_asks_ingest_ext_for_a_deletion():
    rows, _ = validate_records(SAMPLE, [RecordInput({"id": "X", "delete": "true"}, None, None)], mode=INGEST_EXT)
    assert (rows[0].operation, rows[0].delete) == (DELETE, True)


def test_the_delete_flag_is_stored_by_ingest_and_unknown_to_write():
    rows, _ = validate_records(SAMPLE, [RecordInput({"delete": "1"}, None, None)], mode=INGEST)
    assert (rows[0].operation, rows[0].delete) == (INSERT, True)
    _, problems = validate_records(SAMPLE, [RecordInput({"id": "X", "delete": "1"}, None, None)], mode=WRITE)
    assert problems[0].attribute == "delete"


@pytest.mark.parametrize("previous, new, expected", [
    (INSERT, UPDATE, (INSERT, True)),
    (INSERT, INSERT_OR_UPDATE, (INSERT, True)),
    (INSERT, DELETE, (DELETE, False)),
    (INSERT_OR_UPDATE, UPDATE, (INSERT_OR_UPDATE, True)),
    (UPDATE, UPDATE, (UPDATE, True)),
    (UPDATE, INSERT_OR_UPDATE, (INSERT_OR_UPDATE, True)),
    (DELETE, INSERT_OR_UPDATE, (INSERT_OR_UPDATE, False)),
    (DELETE, UPDATE, (DELETE, True)),
    (UPDATE, DELETE, (DELETE, False)),
])
def test_operations_on_one_key_merge_by_the_documented_rule(previous, new, expected):
    assert merge_operation(previous, new) == expected


def test_repeated_keys_merge_in_order_for_ingest_ext():
    records = [RecordInput({"id": "K", "testcol1": "1", "testcol2": "1"}, None, None),
               RecordInput({"id": "K", "testcol1": "2"}, None, None)]
    rows, _ = validate_records(SAMPLE, records, mode=INGEST_EXT)
    (row,), problems = collapse_rows(rows, mode=INGEST_EXT)
    assert problems == []
    assert row.values == {"id": "K", "testcol1": "2", "testcol2": "1"}
    assert row.indexes == (0, 1)


def test_repeated_keys_are_refused_for_ingest():
    records = [RecordInput({"id": "K"}, ("id",), None), RecordInput({"id": "K"}, ("id",), None)]
    rows, _ = validate_records(SAMPLE, records, mode=INGEST)
    _, problems = collapse_rows(rows, mode=INGEST)
    assert problems[0].record == 1
