"""xtk:session#GetOption and Write of xtk:option documents (what the SDK's getOption/setOption send)."""

import re

import pytest

from staging.options import DataType, Option, options_seed
from tests.conftest import BOTH_DATABASES
from tests.soap.conftest import doc_param, logon, make_user, sdk_envelope

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)


def get_option(soap, session, name: str):
    return soap.post(sdk_envelope("xtk:session", "GetOption", f'<name xsi:type="xsd:string">{name}</name>',
                                  session_token=session.session_token, security_token=session.security_token),
                     headers=session.headers)


def write(soap, session, document: str):
    return soap.post(sdk_envelope("xtk:persist|xtk:session", "Write", doc_param(document),
                                  session_token=session.session_token, security_token=session.security_token),
                     headers=session.headers)


@pytest.fixture
def admin_session(soap):
    make_user("option-admin", perms=("change_option",))
    return logon(soap, "option-admin")


def test_the_database_id_is_seeded_once_and_stays(soap, session):
    options_seed()
    first = Option.objects.get(name="XtkDatabaseId").string_value

    assert options_seed() == []  # a second run changes nothing
    answer = get_option(soap, session, "XtkDatabaseId")

    assert answer.status == 200, answer.text
    value, kind = answer.result("GetOption")
    assert value.text == first and re.fullmatch(r"u[0-9A-F]{40}", first)
    assert kind.text == "6"
    assert "<pbtType xsi:type='xsd:byte'>6</pbtType>" in answer.text
    assert "<GetOptionResponse xmlns='urn:xtk:session'" in answer.text


def test_an_unknown_option_answers_an_empty_value_of_type_0(soap, session):
    value, kind = get_option(soap, session, "NoSuchOption").result("GetOption")

    assert (value.text, kind.text) == (None, "0")


@pytest.mark.parametrize(("data_type", "field", "value", "raw"), [
    (DataType.LONG, "long_value", 42, "42"),
    (DataType.DOUBLE, "double_value", 2.5, "2.5"),
    (DataType.MEMO, "memo_value", "a\nlong text", "a\nlong text"),
    (DataType.BOOLEAN, "long_value", 1, "1"),
])
def test_get_option_answers_the_value_in_the_field_of_its_type(soap, session, data_type, field, value, raw):
    Option.objects.create(name="Typed", data_type=data_type, **{field: value})

    got, kind = get_option(soap, session, "Typed").result("GetOption")

    assert (got.text, kind.text) == (raw, str(data_type.value))


def test_write_of_an_option_document_inserts_then_updates_by_name(soap, admin_session):
    # Exactly what client.setOption("ACC_JS_SDK", "v1") sends for an option that does not exist.
    sent = '<option xtkschema="xtk:option" _operation="insertOrUpdate" _key="@name" name="ACC_JS_SDK" ' \
           'dataType="6" stringValue="v1"/>'
    assert write(soap, admin_session, sent).status == 200
    assert write(soap, admin_session, sent.replace('"v1"', '"v2"')).status == 200

    option = Option.objects.get(name="ACC_JS_SDK")
    assert (option.data_type, option.string_value) == (6, "v2")
    value, kind = get_option(soap, admin_session, "ACC_JS_SDK").result("GetOption")
    assert (value.text, kind.text) == ("v2", "6")


def test_write_of_a_long_option_and_a_delete(soap, admin_session):
    assert write(soap, admin_session, '<option xtkschema="xtk:option" name="N" dataType="3" longValue="7" '
                                      'description="seven"/>').status == 200
    assert (Option.objects.get(name="N").long_value, Option.objects.get(name="N").description) == (7, "seven")

    assert write(soap, admin_session, '<option xtkschema="xtk:option" _operation="delete" name="N"/>').status == 200
    assert not Option.objects.filter(name="N").exists()


@pytest.mark.parametrize(("document", "named"), [
    ('<option xtkschema="xtk:option" name="Bad" dataType="3" longValue="seven"/>', "longValue"),
    ('<option xtkschema="xtk:option" name="Bad" dataType="99" stringValue="x"/>', "dataType"),
    ('<option xtkschema="xtk:option" name="Bad" colour="red"/>', "colour"),
    ('<option xtkschema="xtk:option" stringValue="no name"/>', "name"),
    ('<option xtkschema="xtk:option" _key="@stringValue" name="Bad" stringValue="x"/>', "_key"),
    ('<option xtkschema="xtk:option" _operation="update" name="Bad" stringValue="x"/>', "insertOrUpdate"),
    ('<option xtkschema="xtk:option" name="Bad" dataType="3"/>', "longValue"),
])
def test_a_bad_option_document_is_a_fault_naming_the_problem_and_writes_nothing(soap, admin_session, document,
                                                                                named):
    answer = write(soap, admin_session, document)

    assert answer.status == 500
    assert named in answer.fault()["detail"]
    assert not Option.objects.filter(name="Bad").exists()
    # The next good call on the same server still works.
    assert write(soap, admin_session, '<option xtkschema="xtk:option" name="Good" stringValue="x"/>').status == 200


def test_a_collection_of_options_is_written_all_or_nothing(soap, admin_session):
    answer = write(soap, admin_session, '<option-collection xtkschema="xtk:option">'
                                        '<option name="A" stringValue="a"/><option name="B" dataType="5" '
                                        'doubleValue="nan"/></option-collection>')

    assert answer.status == 500
    assert "record 1" in answer.fault()["detail"]
    assert not Option.objects.filter(name__in=["A", "B"]).exists()


def test_writing_an_option_needs_the_change_option_permission(soap, session):
    answer = write(soap, session, '<option xtkschema="xtk:option" name="X" stringValue="x"/>')

    assert answer.status == 500
    assert "staging.change_option" in answer.fault()["detail"]
    assert not Option.objects.filter(name="X").exists()


def test_reading_an_option_needs_only_a_session(soap, session):
    Option.objects.create(name="Public", string_value="p")

    assert get_option(soap, session, "Public").result("GetOption")[0].text == "p"
