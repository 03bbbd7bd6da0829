"""Nested records over real HTTP: an extended nms:recipient with a location, a link by key and XML fields
through Ingest, IngestExt and Write, then synced into the cloud table. (Schemas: see
tests/staging/test_nested_records.py, which cites the Adobe pages they are modelled on.)"""

import pytest
from django.db import connections

from campaignsite.permissions import SYSTEM
from staging import services
from staging.models import Schema
from staging.sync import staging_sync
from staging.xml import parse_xml
from tests.conftest import BOTH_DATABASES
from tests.soap.test_ingest_soap import sdk_call
from tests.staging.test_nested_records import COMPANY, EXTENSION

pytestmark = pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)


@pytest.fixture
def recipient() -> Schema:
    services.builtin_schemas_load(user=SYSTEM)
    for source in (COMPANY, EXTENSION):
        services.structure_update(schema=services.schema_create(source=source, user=SYSTEM), user=SYSTEM)
    return Schema.objects.get(namespace="nms", name="recipient")


def cloud(sql: str) -> list[tuple]:
    with connections["cloud"].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_soap_ingest_ext_and_write_carry_nested_elements_links_and_xml_fields(soap, session, recipient):
    assert sdk_call(soap, session, "Write", '<company xtkschema="cus:company" name="Acme"/>').status == 200
    answer = sdk_call(soap, session, "Ingest", (
        '<recipient-collection xtkschema="nms:recipientStg">'
        '<recipient email="ann@example.com" branch="3" notes="vip"><location city="Paris" zipCode="75001"/>'
        '<bio><![CDATA[<p>Ann</p>]]></bio><company _key="@name" name="Acme"/></recipient>'
        '<recipient email="bob@example.com"><company _key="@name" name="Nope"/></recipient>'
        '</recipient-collection>'))
    assert answer.status == 200, answer.text

    bad = sdk_call(soap, session, "Ingest", '<recipient xtkschema="nms:recipientStg" email="x@x">'
                                            '<location planet="Mars"/></recipient>')
    assert bad.status == 500 and "location/planet" in bad.text

    run = staging_sync(schema=recipient, trigger="command", user=SYSTEM)
    assert (run.inserted, run.failed) == (1, 1)

    # A partial IngestExt: only the zip code and one XML field; the rest stays as it was.
    answer = sdk_call(soap, session, "IngestExt", '<recipient xtkschema="nms:recipientStg" _key="@email" '
                                                  'email="ann@example.com" notes="vvip"><location zipCode="75002"/>'
                                                  '</recipient>')
    assert answer.status == 200, answer.text
    staging_sync(schema=Schema.objects.get(pk=recipient.pk), trigger="command", user=SYSTEM)

    ((city, zip_code, branch, company, data),) = cloud(
        "SELECT sCity, sZipCode, iBranch, uCompanyId, mData FROM NmsRecipient")
    (acme,) = cloud("SELECT uCompanyId FROM CusCompany")
    assert (city, zip_code, branch, str(company)) == ("Paris", "75002", 3, str(acme[0]))
    document = parse_xml(data, max_bytes=100_000)
    assert (document.get("notes"), document.findtext("bio")) == ("vvip", "<p>Ann</p>")

    # Write resolves the link at once; a missing target refuses the call and writes nothing.
    missing = sdk_call(soap, session, "Write", '<recipient xtkschema="nms:recipient" email="cid@example.com">'
                                               '<company _key="@name" name="Nope"/></recipient>')
    assert missing.status == 500 and "no cus:company with @name=" in missing.text
    answer = sdk_call(soap, session, "Write", '<recipient xtkschema="nms:recipient" email="cid@example.com">'
                                              '<company _key="@name" name="Acme"/></recipient>')
    assert answer.status == 200, answer.text
    assert [str(c) for (c,) in cloud("SELECT uCompanyId FROM NmsRecipient WHERE sEmail = 'cid@example.com'")] == [
        str(acme[0])]
