"""Nested records (sub-elements, JSON objects), XML fields in mData and links by key, through the
services into staging and the cloud tables (SQLite, or PostgreSQL in CI's second leg).

The extension below is written for these tests, modelled on the constructs of Adobe's public pages
https://experienceleague.adobe.com/docs/campaign-classic/using/configuring-campaign-classic/editing-schemas/extending-a-schema.html
(custom fields, a sub-element, an XML memo) and
https://experienceleague.adobe.com/docs/campaign-classic/using/configuring-campaign-classic/schema-reference/database-mapping.html
(links to a custom table, XML fields stored in mData).
"""

import pytest
from django.db import connections

from campaignsite.errors import InvalidInput
from campaignsite.permissions import SYSTEM
from staging import services
from staging.models import Schema
from staging.records import records_from_json, records_from_xml
from staging.sync import staging_sync
from staging.xml import parse_xml
from tests.conftest import BOTH_DATABASES

from .conftest import record

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

# A company table of our own, and an extension of the built-in recipient: two custom fields, a field
# added to the built-in location sub-element, a memo and an HTML text kept in mData, a link by company.
COMPANY = """<srcSchema namespace="cus" name="company"><element name="company" autopk="true" autouuid="true">
  <key name="byName"><keyfield xpath="@name"/></key>
  <attribute name="name" length="80"/></element></srcSchema>"""
EXTENSION = """<srcSchema namespace="cus" name="recipient" extendedSchema="nms:recipient" label="Our recipients">
  <element name="recipient">
    <attribute name="branch" type="long" label="Branch code"/>
    <attribute name="loyalty" length="20" label="Loyalty tier"/>
    <attribute name="notes" type="memo" xml="true" label="Free notes"/>
    <element name="bio" type="html" label="Biography"/>
    <element name="location"><attribute name="district" length="40"/></element>
    <element name="company" type="link" target="cus:company" label="Employer"/>
  </element>
</srcSchema>"""


def xml(text: str):
    return parse_xml(text, max_bytes=1_000_000)


def fresh(schema: Schema) -> Schema:
    return Schema.objects.get(pk=schema.pk)


@pytest.fixture
def recipient() -> Schema:
    services.builtin_schemas_load(user=SYSTEM)
    company = services.schema_create(source=COMPANY, user=SYSTEM)
    services.structure_update(schema=company, user=SYSTEM)
    extension = services.schema_create(source=EXTENSION, user=SYSTEM)
    services.structure_update(schema=extension, user=SYSTEM)
    return Schema.objects.get(namespace="nms", name="recipient")


def cloud_rows(sql: str) -> list[tuple]:
    with connections["cloud"].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def sync(recipient):
    return staging_sync(schema=fresh(recipient), trigger="command", user=SYSTEM)


def test_nested_xml_and_json_records_ingest_and_sync_into_columns_and_mdata(recipient):
    _, from_xml = records_from_xml(xml(
        '<recipient email="ann@example.com" branch="12" notes="likes jazz">'
        '<location city="Paris" zipCode="75001" district="Marais"/><bio><![CDATA[<p>Hi & bye</p>]]></bio>'
        '</recipient>'))
    from_json = records_from_json({"email": "bob@example.com", "location": {"city": "Lyon"}, "loyalty": "gold"})
    services.records_ingest(schema_id="nms:recipientStg", records=from_xml + from_json, user=SYSTEM)

    run = sync(recipient)

    assert (run.inserted, run.failed) == (2, 0)
    rows = cloud_rows("SELECT sEmail, sCity, sZipCode, sDistrict, iBranch, sLoyalty, mData FROM NmsRecipient "
                      "ORDER BY sEmail")
    assert [row[:6] for row in rows] == [("ann@example.com", "Paris", "75001", "Marais", 12, None),
                                         ("bob@example.com", "Lyon", None, None, 0, "gold")]
    data = xml(rows[0][6])
    assert (data.tag, data.get("notes"), data.findtext("bio")) == ("recipient", "likes jazz", "<p>Hi & bye</p>")
    assert rows[1][6] is None


def test_a_partial_ingest_ext_keeps_the_extension_and_xml_fields_it_does_not_supply(recipient):
    services.records_ingest(schema_id="nms:recipientStg", user=SYSTEM, records=records_from_json(
        {"email": "ann@example.com", "branch": "12", "loyalty": "gold", "notes": "likes jazz", "bio": "<b>A</b>"}))
    sync(recipient)

    # Staged again before and after the sync: both the staged row and the cloud row keep what is absent.
    services.records_ingest_ext(schema_id="nms:recipientStg", user=SYSTEM, records=records_from_json(
        {"_key": "@email", "email": "ann@example.com", "bio": "<b>B</b>"}))
    services.records_ingest_ext(schema_id="nms:recipientStg", user=SYSTEM, records=records_from_json(
        {"_key": "@email", "email": "ann@example.com", "location": {"city": "Nice"}}))
    run = sync(recipient)

    assert (run.updated, run.failed) == (1, 0)
    ((email, branch, loyalty, city, data),) = cloud_rows(
        "SELECT sEmail, iBranch, sLoyalty, sCity, mData FROM NmsRecipient")
    assert (email, branch, loyalty, city) == ("ann@example.com", 12, "gold", "Nice")
    document = xml(data)
    assert (document.get("notes"), document.findtext("bio")) == ("likes jazz", "<b>B</b>")


def test_keys_name_sub_element_attributes_by_xpath(recipient):
    services.records_ingest(schema_id="nms:recipientStg", user=SYSTEM, records=records_from_json(
        {"email": "ann@example.com", "location": {"city": "Paris"}}))
    _, records = records_from_xml(xml(
        '<recipient _key="location/@city" loyalty="silver"><location city="Paris"/></recipient>'))
    services.records_ingest_ext(schema_id="nms:recipientStg", user=SYSTEM, records=records)
    sync(recipient)

    assert cloud_rows("SELECT sEmail, sLoyalty FROM NmsRecipient") == [("ann@example.com", "silver")]


def test_an_unknown_sub_element_is_refused_naming_record_and_path(recipient):
    with pytest.raises(InvalidInput) as caught:
        services.records_ingest(schema_id="nms:recipientStg", user=SYSTEM, records=[
            record({"email": "a@x"}), *records_from_json({"email": "b@x", "location": {"planet": "Mars"}})])

    assert [(p.record, p.attribute) for p in caught.value.problems] == [(1, "location/planet")]
    services.records_ingest(schema_id="nms:recipientStg", user=SYSTEM, records=[record({"email": "a@x"})])


def test_write_merges_xml_fields_into_the_cloud_row(recipient):
    services.records_write(schema_id="nms:recipient", user=SYSTEM, records=records_from_json(
        {"_key": "@email", "email": "ann@example.com", "notes": "one", "bio": "two"}))
    services.records_write(schema_id="nms:recipient", user=SYSTEM, records=records_from_json(
        {"_key": "@email", "email": "ann@example.com", "notes": "three", "location": {"city": "Paris"}}))

    ((city, data),) = cloud_rows("SELECT sCity, mData FROM NmsRecipient")
    document = xml(data)
    assert (city, document.get("notes"), document.findtext("bio")) == ("Paris", "three", "two")


def company_ids() -> dict[str, str]:
    return {name: str(uid) for uid, name in cloud_rows("SELECT uCompanyId, sName FROM CusCompany")}


def staged_failures() -> list[tuple]:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT sEmail, sStgStatus, mStgError FROM NmsRecipientStg ORDER BY sEmail")
        return cursor.fetchall()


def test_links_by_key_resolve_at_sync_and_a_missing_target_fails_only_its_row(recipient):
    services.records_write(schema_id="cus:company", user=SYSTEM, records=[record({"name": "Acme"})])
    _, from_xml = records_from_xml(xml('<recipient email="ann@example.com"><company _key="@name" name="Acme"/>'
                                       '</recipient>'))
    from_json = records_from_json([{"email": "bob@example.com", "company": {"_key": "@name", "name": "Nope"}},
                                   {"email": "cid@example.com", "company": {"name": "Acme"}}])
    services.records_ingest(schema_id="nms:recipientStg", user=SYSTEM, records=from_xml + from_json)

    run = sync(recipient)

    assert (run.inserted, run.failed) == (2, 1)
    acme = company_ids()["Acme"]
    assert [(e, str(c)) for e, c in cloud_rows("SELECT sEmail, uCompanyId FROM NmsRecipient ORDER BY sEmail")] == [
        ("ann@example.com", acme), ("cid@example.com", acme)]
    assert staged_failures()[1] == ("bob@example.com", "failed", "link 'company': no cus:company with @name='Nope'")
    assert company_ids().keys() == {"Acme"}  # the sync never creates the target

    # Once the target exists, the failed row goes through on retry.
    services.records_write(schema_id="cus:company", user=SYSTEM, records=[record({"name": "Nope"})])
    from staging.sync import failed_rows_retry
    failed_rows_retry(schema=fresh(recipient), user=SYSTEM)
    assert (sync(recipient).inserted, cloud_rows("SELECT uCompanyId FROM NmsRecipient WHERE sEmail = 'bob@example.com'")
            [0][0] is not None) == (1, True)


def test_a_partial_ingest_ext_keeps_a_pending_link_and_may_replace_it(recipient):
    services.records_write(schema_id="cus:company", user=SYSTEM, records=[record({"name": "Acme"}),
                                                                          record({"name": "Bolt"})])
    services.records_ingest(schema_id="nms:recipientStg", user=SYSTEM, records=records_from_json(
        {"email": "ann@example.com", "company": {"name": "Acme"}}))
    services.records_ingest_ext(schema_id="nms:recipientStg", user=SYSTEM, records=records_from_json(
        {"_key": "@email", "email": "ann@example.com", "loyalty": "gold"}))
    sync(recipient)
    assert [(str(c), l) for c, l in cloud_rows("SELECT uCompanyId, sLoyalty FROM NmsRecipient")] == [
        (company_ids()["Acme"], "gold")]

    services.records_ingest_ext(schema_id="nms:recipientStg", user=SYSTEM, records=records_from_json(
        {"_key": "@email", "email": "ann@example.com", "company": {"_key": "@name", "name": "Bolt"}}))
    sync(recipient)
    assert [(str(c), l) for c, l in cloud_rows("SELECT uCompanyId, sLoyalty FROM NmsRecipient")] == [
        (company_ids()["Bolt"], "gold")]


def test_write_resolves_links_by_key_at_once_and_refuses_a_missing_target(recipient):
    services.records_write(schema_id="cus:company", user=SYSTEM, records=[record({"name": "Acme"})])
    _, records = records_from_xml(xml('<recipient-collection><recipient email="a@x"><company _key="@name" '
                                      'name="Acme"/></recipient><recipient email="b@x"><company _key="@name" '
                                      'name="Nope"/></recipient></recipient-collection>'))
    with pytest.raises(InvalidInput) as caught:
        services.records_write(schema_id="nms:recipient", user=SYSTEM, records=records)
    assert [(p.record, p.attribute, p.message) for p in caught.value.problems] == [
        (1, "company/_key", "link 'company': no cus:company with @name='Nope'")]
    assert cloud_rows("SELECT COUNT(*) FROM NmsRecipient") == [(0,)]

    services.records_write(schema_id="nms:recipient", user=SYSTEM, records=records[:1])
    assert [(e, str(c)) for e, c in cloud_rows("SELECT sEmail, uCompanyId FROM NmsRecipient")] == [
        ("a@x", company_ids()["Acme"])]


def test_a_link_element_with_other_fields_than_its_key_is_refused(recipient):
    with pytest.raises(InvalidInput) as caught:
        services.records_ingest(schema_id="nms:recipientStg", user=SYSTEM, records=records_from_json(
            {"email": "a@x", "company": {"_key": "@name", "name": "Acme", "city": "Paris"}}))
    assert caught.value.problems[0].attribute == "company/_key"
    assert "set by its key only" in caught.value.problems[0].message


@pytest.mark.django_db(databases=BOTH_DATABASES, transaction=True)
def test_links_by_key_resolve_on_the_route_outside_a_transaction_too(recipient):
    # Outside a caller's transaction the sync takes its fast route (ATTACH on SQLite, COPY on PostgreSQL).
    from staging.sync import ROWS, _route, _Tables
    assert _route(_Tables(fresh(recipient).description)) != ROWS
    test_links_by_key_resolve_at_sync_and_a_missing_target_fails_only_its_row(recipient)


# --- The doors: REST and manage.py ingest -------------------------------------------------------

def test_rest_ingests_nested_objects_links_by_key_and_xml_fields_then_ingest_ext_keeps_the_rest(recipient, ingester):
    from rest_framework.test import APIClient

    from tests.api_tokens import api_token

    services.records_write(schema_id="cus:company", user=SYSTEM, records=[record({"name": "Acme"})])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(ingester)}")
    response = api.post("/api/v1/staging/nms:recipient/ingest/", format="json", data=[
        {"email": "ann@example.com", "branch": 7, "notes": "vip", "bio": "<i>Ann</i>",
         "location": {"city": "Paris", "district": "Marais"}, "company": {"_key": "@name", "name": "Acme"}},
        {"email": "bob@example.com", "company": {"_key": "@name", "name": "Nope"}}])
    assert response.status_code == 201, response.json()
    response = api.post("/api/v1/staging/nms:recipient/ingest/", format="json",
                        data=[{"email": "cid@example.com", "location": {"planet": "Mars"}}])
    assert response.status_code == 400
    assert response.json()["problems"][0]["attribute"] == "location/planet"

    run = sync(recipient)
    assert (run.inserted, run.failed) == (1, 1)
    response = api.post("/api/v1/staging/nms:recipient/ingest-ext/", format="json",
                        data=[{"_key": "@email", "email": "ann@example.com", "notes": "vvip"}])
    assert response.status_code in (200, 201), response.json()
    sync(recipient)

    ((city, district, branch, company, data),) = cloud_rows(
        "SELECT sCity, sDistrict, iBranch, uCompanyId, mData FROM NmsRecipient")
    assert (city, district, branch, str(company)) == ("Paris", "Marais", 7, company_ids()["Acme"])
    document = xml(data)
    assert (document.get("notes"), document.findtext("bio")) == ("vvip", "<i>Ann</i>")


@pytest.mark.parametrize("fmt", ["xml", "jsonl", "csv"])
def test_the_ingest_command_reads_nested_records_and_links_in_every_format(recipient, tmp_path, fmt):
    from io import StringIO

    from django.core.management import call_command

    services.records_write(schema_id="cus:company", user=SYSTEM, records=[record({"name": "Acme"})])
    path = tmp_path / f"people.{fmt}"
    path.write_text({
        "xml": '<recipient-collection xtkschema="nms:recipientStg">\n'
               '  <recipient email="ann@example.com" notes="vip"><location city="Paris"/>'
               '<company _key="@name" name="Acme"/></recipient>\n'
               '  <recipient email="bob@example.com"><company _key="@name" name="Nope"/></recipient>\n'
               '</recipient-collection>\n',
        "jsonl": '{"email": "ann@example.com", "notes": "vip", "location": {"city": "Paris"}, '
                 '"company": {"_key": "@name", "name": "Acme"}}\n'
                 '{"email": "bob@example.com", "company": {"_key": "@name", "name": "Nope"}}\n',
        "csv": "email,notes,location/@city,company/_key,company/name\n"
               "ann@example.com,vip,Paris,@name,Acme\nbob@example.com,,,@name,Nope\n",
    }[fmt])
    call_command("ingest", "nms:recipient", str(path), stdout=StringIO(), stderr=StringIO())

    run = sync(recipient)

    assert (run.inserted, run.failed) == (1, 1)
    ((email, city, company, data),) = cloud_rows("SELECT sEmail, sCity, uCompanyId, mData FROM NmsRecipient")
    assert (email, city, str(company), xml(data).get("notes")) == (
        "ann@example.com", "Paris", company_ids()["Acme"], "vip")
    assert staged_failures()[1][2] == "link 'company': no cus:company with @name='Nope'"
