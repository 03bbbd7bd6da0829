"""The srcSchema parser: pure, no database."""

import re
from pathlib import Path

import pytest

from campaignsite.errors import InvalidXml, SchemaInvalid, TooLarge
from staging.srcschema import SUPPORTED_TYPES, parse_srcschema

# The seed page sits in a `shared/seeds` folder beside the checkout (or beside the folder holding it).
SEED = next((parent / "shared" / "seeds" / "000_0b4980c657ab00f7.txt" for parent in Path(__file__).resolve().parents
             if (parent / "shared" / "seeds").is_dir()), Path("shared/seeds/000_0b4980c657ab00f7.txt"))


def seed_schemas() -> list[str]:
    """The two srcSchema documents of the seed page (step 1 without staging, step 3 with autoStg)."""
    return re.findall(r"```\n(.*?)```", SEED.read_text(), re.S)


def schema_xml(attributes: str = "", *, element_attrs: str = 'autopk="true" autouuid="true"',
               namespace: str = "cus", name: str = "thing", before: str = "") -> str:
    return (
        f'<srcSchema namespace="{namespace}" name="{name}" label="Things">\n'
        f"{before}"
        f'  <element name="{name}" {element_attrs}>\n'
        f"{attributes}"
        "  </element>\n"
        "</srcSchema>\n"
    )


def problems_of(excinfo) -> str:
    return excinfo.value.detail


def test_seed_schema_parses_verbatim_with_campaign_names():
    without_staging, with_staging = seed_schemas()

    description = parse_srcschema(without_staging)

    assert description.id == "dem:sampleTable"
    assert description.label == "Sample Table"
    assert description.sql_table == "DemSampleTable"
    assert (description.autopk, description.autouuid, description.auto_stg) == (True, True, False)
    assert description.is_cloud
    assert [(a.name, a.type, a.sql_name, a.length) for a in description.attributes] == [
        ("id", "uuid", "uSampleTableId", 255),
        ("testcol1", "string", "sTestcol1", 255),
        ("testcol2", "string", "sTestcol2", 255),
    ]
    assert description.primary_key == ("id",)
    staged = parse_srcschema(with_staging)
    assert staged.auto_stg
    assert (staged.staging_id, staged.staging_table) == ("dem:sampleTableStg", "DemSampleTableStg")


@pytest.mark.parametrize(
    "attr_type, prefix",
    [("string", "s"), ("memo", "m"), ("boolean", "i"), ("byte", "i"), ("short", "i"), ("long", "i"),
     ("int64", "i"), ("float", "d"), ("double", "d"), ("date", "ts"), ("datetime", "ts"), ("datetimetz", "ts"),
     ("datetimenotz", "ts"), ("time", "ts"), ("uuid", "u")],
)
def test_every_supported_type_gets_its_campaign_column_prefix(attr_type, prefix):
    description = parse_srcschema(schema_xml(f'    <attribute name="value" type="{attr_type}"/>\n'))

    attribute = description.attribute("value")
    assert attribute.type == attr_type
    assert attribute.sql_name == f"{prefix}Value"
    assert attribute.length == (255 if attr_type == "string" else None)


def test_all_documented_types_are_covered_by_the_test_above():
    assert set(SUPPORTED_TYPES) == {
        "string", "memo", "boolean", "byte", "short", "long", "int64", "float", "double", "date", "datetime",
        "datetimetz", "datetimenotz", "time", "uuid",
    }


def test_lengths_not_null_defaults_and_sqlname_are_read():
    description = parse_srcschema(schema_xml(
        '    <attribute name="code" type="string" length="12" notNull="true" default="\'x\'" sqlname="sCodeX"/>\n'
        '    <attribute name="score" type="long" default="7"/>\n'
    ))

    code = description.attribute("code")
    assert (code.length, code.not_null, code.default, code.sql_name) == (12, True, "'x'", "sCodeX")
    assert description.attribute("score").default == "7"


def test_sqltable_and_hyphenated_names():
    description = parse_srcschema(schema_xml(
        '    <attribute name="recipient-id" type="string"/>\n',
        element_attrs='autopk="true" autouuid="true" sqltable="CusThings"',
    ))

    assert description.sql_table == "CusThings"
    assert description.staging_table == "CusThingsStg"
    assert description.attribute("recipient-id").sql_name == "sRecipientId"


def test_keys_indexes_and_enumerations():
    description = parse_srcschema(schema_xml(
        '    <key name="email"><keyfield xpath="@email"/></key>\n'
        '    <dbindex name="byName" unique="false"><keyfield xpath="@lastName"/><keyfield xpath="[@firstName]"/></dbindex>\n'
        '    <attribute name="email" type="string" length="80"/>\n'
        '    <attribute name="firstName" type="string"/>\n'
        '    <attribute name="lastName" type="string"/>\n'
        '    <attribute name="status" type="byte" enum="status"/>\n',
        before='  <enumeration name="status" basetype="byte"><value name="new" value="0"/><value name="done" value="1"/>'
               "</enumeration>\n",
    ))

    assert [(k.name, k.fields) for k in description.keys] == [("email", ("email",))]
    assert [(i.name, i.fields, i.unique) for i in description.indexes] == [
        ("byName", ("lastName", "firstName"), False)
    ]
    status = description.enumerations_by_name["status"]
    assert [v.value for v in status.values] == ["0", "1"]
    assert status.accepts("done") == "1" and status.accepts("1") == "1" and status.accepts("x") is None


def test_without_autopk_the_internal_key_is_the_primary_key():
    description = parse_srcschema(schema_xml(
        '    <key name="code" internal="true"><keyfield xpath="@code"/></key>\n'
        '    <key name="email"><keyfield xpath="@email"/></key>\n'
        '    <attribute name="code" type="string"/>\n'
        '    <attribute name="email" type="string"/>\n',
        element_attrs="",
    ))

    assert description.primary_key == ("code",)
    assert [k.name for k in description.keys] == ["email"]


def test_elements_that_do_not_change_storage_are_ignored():
    description = parse_srcschema(schema_xml(
        '    <compute-string expr="@label"/>\n'
        '    <sysFilter><condition expr="1=1"/></sysFilter>\n'
        '    <attribute name="label" type="string"/>\n'
        '    <attribute name="full" type="string" expr="@label"/>\n'
    ))

    assert [a.name for a in description.attributes] == ["id", "label"]


def test_unknown_type_names_line_attribute_and_the_fix():
    with pytest.raises(SchemaInvalid) as excinfo:
        parse_srcschema(schema_xml('    <attribute name="amount" type="money"/>\n'))

    detail = problems_of(excinfo)
    assert "line 3" in detail
    assert "attribute 'type'" in detail and "'money'" in detail
    assert "use one of string, memo" in detail


def test_duplicate_attribute_names_are_refused_with_both_lines():
    with pytest.raises(SchemaInvalid) as excinfo:
        parse_srcschema(schema_xml(
            '    <attribute name="code" type="string"/>\n'
            '    <attribute name="code" type="long"/>\n'
        ))

    assert "declared twice (first on line 3)" in problems_of(excinfo)
    assert "line 4" in problems_of(excinfo)


def test_duplicate_xml_attribute_is_a_parse_error():
    with pytest.raises(InvalidXml) as excinfo:
        parse_srcschema(schema_xml('    <attribute name="code" name="other"/>\n'))

    assert "line 3: Attribute name redefined (column" in excinfo.value.detail


def test_reserved_namespace_is_refused_for_user_schemas_and_allowed_for_built_ins():
    xml = schema_xml('    <attribute name="email" type="string"/>\n', namespace="nms", name="custom")

    with pytest.raises(SchemaInvalid) as excinfo:
        parse_srcschema(xml)
    assert "namespace 'nms' is reserved" in problems_of(excinfo)
    assert parse_srcschema(xml, builtin=True).id == "nms:custom"


@pytest.mark.parametrize(
    "snippet, expected",
    [
        ('    <attribute name="x" type="string" length="abc"/>\n', "length of 'x' must be a whole number"),
        ('    <attribute name="x" type="string" length="20000"/>\n', 'use type="memo"'),
        ('    <attribute name="x" type="string" sqlname="bad name"/>\n', "must be a SQL identifier"),
        ('    <attribute type="string"/>\n', "<attribute> needs a name"),
        ('    <attribute name="1x" type="string"/>\n', "starting with a letter"),
        ('    <attribute name="x" type="string" enum="nope"/>\n', "enumeration 'nope'"),
        ('    <attribute name="delete" type="boolean"/>\n', "reserved for the staging table"),
        ('    <attribute name="x" type="string" notNull="maybe"/>\n', 'notNull must be "true" or "false"'),
        ('    <element name="company" type="link" target="cus:company"/>\n', "targets cus:company, which is not loaded"),
        ('    <attribute name="x" type="string" xml="true"/><key name="k"><keyfield xpath="@x"/></key>\n',
         "XML fields cannot be keys"),
        ('    <key name="k"><keyfield xpath="@missing"/></key>\n', "refers to @missing"),
        ('    <key name="k"><keyfield xpath="company/@name"/></key>\n', "refers to company/@name"),
        ('    <key name="k"><keyfield xpath="Lower(@x)"/></key>\n', "must be the path of an attribute"),
        ('    <key name="k"/>\n', "needs at least one <keyfield"),
        ('    <attribute name="a" type="string" sqlname="sX"/><attribute name="b" type="string" sqlname="SX"/>\n',
         "clashes with 'a'"),
    ],
)
def test_documented_errors_say_what_to_change(snippet, expected):
    with pytest.raises(SchemaInvalid) as excinfo:
        parse_srcschema(schema_xml(snippet))

    assert expected in problems_of(excinfo)


def test_every_problem_of_a_document_is_reported_at_once():
    with pytest.raises(SchemaInvalid) as excinfo:
        parse_srcschema(schema_xml(
            '    <attribute name="a" type="money"/>\n'
            '    <attribute name="b" type="string" length="0"/>\n'
        ))

    assert len(excinfo.value.problems) == 2


def test_main_element_must_match_the_schema_name():
    with pytest.raises(SchemaInvalid) as excinfo:
        parse_srcschema('<srcSchema namespace="cus" name="thing"><element name="other" autopk="true"/></srcSchema>')

    assert "must be named like the schema ('thing')" in problems_of(excinfo)


def test_schema_without_any_key_describes_a_keyless_table():
    description = parse_srcschema(schema_xml('    <attribute name="a" type="string"/>\n', element_attrs=""))

    assert description.primary_key == ()
    assert [a.name for a in description.attributes] == ["a"]


def test_not_a_srcschema_root():
    with pytest.raises(SchemaInvalid) as excinfo:
        parse_srcschema("<schema namespace='a' name='b'/>")

    assert "starts with <srcSchema" in problems_of(excinfo)


@pytest.mark.parametrize(
    "element_attrs, expected",
    [
        ('autoStg="true"', 'needs autopk="true" autouuid="true"'),
        ('autoStg="true" autopk="true"', 'needs autopk="true" autouuid="true"'),
        ('autoStg="true" autopk="true" autouuid="true" dataSource="nms:extAccount:local"', "cloud schemas only"),
    ],
)
def test_staging_refusals_say_what_to_change(element_attrs, expected):
    with pytest.raises(SchemaInvalid) as excinfo:
        parse_srcschema(schema_xml('    <attribute name="a" type="string"/>\n', element_attrs=element_attrs))

    assert expected in problems_of(excinfo)


def test_staging_cannot_be_enabled_on_a_staging_schema():
    xml = (
        '<srcSchema namespace="dem" name="sampleTableStg" stgSrcSchema="dem:sampleTable">'
        '<element name="sampleTableStg" autoStg="true" autopk="true" autouuid="true">'
        '<attribute name="id" type="uuid" sqlname="uSampleTableId"/></element></srcSchema>'
    )

    with pytest.raises(SchemaInvalid) as excinfo:
        parse_srcschema(xml)

    assert "is itself a staging schema" in problems_of(excinfo)


def test_generated_staging_schema_without_autostg_loads_and_keeps_its_key_column():
    xml = (
        '<srcSchema namespace="dem" name="sampleTableStg" stgSrcSchema="dem:sampleTable">'
        '<element name="sampleTableStg" autoStg="false" autopk="true" autouuid="true" sqltable="DemSampleTableStg">'
        '<attribute name="id" type="uuid" sqlname="uSampleTableId"/>'
        '<attribute name="testcol1" type="string" sqlname="sTestcol1"/></element></srcSchema>'
    )

    description = parse_srcschema(xml)

    assert description.attribute("id").sql_name == "uSampleTableId"
    assert description.is_staging_schema


@pytest.mark.parametrize(
    "document, expected",
    [
        ("<srcSchema namespace='a' name='b'><element", "not well-formed"),
        ("", "is empty"),
        ('<?xml version="1.0"?><!DOCTYPE srcSchema [<!ENTITY x "boom">]>'
         '<srcSchema namespace="cus" name="t" label="&x;"/>', "DTDs are not accepted"),
        ('<?xml version="1.0"?><!DOCTYPE srcSchema [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
         '<srcSchema namespace="cus" name="t" label="&x;"/>', "DTDs are not accepted"),
    ],
)
def test_malformed_xml_dtd_and_entities_are_refused(document, expected):
    with pytest.raises(InvalidXml) as excinfo:
        parse_srcschema(document)

    assert expected in excinfo.value.detail


def test_a_50_mb_document_is_refused_before_parsing():
    padding = " " * (50 * 1024 * 1024)
    document = schema_xml(f'    <attribute name="a" type="string" label="{padding}"/>\n')

    with pytest.raises(TooLarge) as excinfo:
        parse_srcschema(document)

    assert "the limit is 1048576 bytes" in excinfo.value.message
