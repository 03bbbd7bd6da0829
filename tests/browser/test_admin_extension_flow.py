"""Extending nms:recipient in a real browser: add an extension schema in the admin (a custom field, a
field of the location sub-element, a construct that is ignored with a warning), update the structure
of the recipient table from the extension's page, and find the new columns in the staged and cloud
browsers of nms:recipient, with no script errors on those pages."""

import re

import pytest
from django.db import connections

from campaignsite.permissions import SYSTEM
from staging import services
from staging.models import Schema
from staging.sync import staging_sync
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import make_user, record

from .test_admin_schema_flow import columns_of, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(databases=BOTH_DATABASES, transaction=True)]

# Modelled on the "extending a schema" example of Adobe's Campaign documentation, in our own words.
EXTENSION = """<srcSchema namespace="cus" name="recipient" extendedSchema="nms:recipient" label="Our recipients">
  <element name="recipient">
    <attribute name="loyalty" type="string" length="20" label="Loyalty tier"/>
    <element name="location"><attribute name="district" length="40" label="District"/></element>
    <sysFilter><condition expr="@loyalty IS NOT NULL"/></sysFilter>
  </element>
</srcSchema>"""


def test_extending_the_recipient_in_the_admin_adds_columns_to_its_tables(live_server, browser_page,
                                                                         django_user_model):
    services.builtin_schemas_load(user=SYSTEM)
    django_user_model.objects.create_superuser("admin", "admin@example.com", "secret-pw")
    page = browser_page
    console_errors = []
    page.on("console", lambda message: console_errors.append((page.url, message.text, message.location))
            if message.type == "error" else None)
    page.on("pageerror", lambda error: console_errors.append((page.url, str(error), error.stack)))

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "secret-pw")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/staging/schema/add/")
    page.fill("#id_source", EXTENSION)
    page.click("input[name=_save]")

    # Saved, with the ignored construct reported as a warning, not an error.
    assert "cus:recipient" in page.locator("#result_list").inner_text()
    assert "<sysFilter> is kept in the source and ignored" in page.locator("ul.messagelist li.warning").inner_text()
    assert page.locator("ul.messagelist li.error").count() == 0

    page.locator("#result_list").get_by_role("link", name="cus:recipient", exact=True).click()
    assert "<sysFilter>" in page.locator("#staging-warnings").inner_text()
    page.get_by_role("link", name="Update database structure").click()
    screenshot(page, "extension_structure_confirmation")
    assert "Selected through its extension cus:recipient" in page.locator(".staging-via").inner_text()
    ddl_text = page.locator("pre.staging-ddl").inner_text()
    for table, column in (("NmsRecipient", "sLoyalty"), ("NmsRecipient", "sDistrict"),
                          ("NmsRecipientStg", "sDistrict")):
        assert re.search(rf'ALTER TABLE "{table}" ADD COLUMN "{column}"', ddl_text, re.I), ddl_text
    page.get_by_role("button", name="Apply").click()
    page.wait_for_load_state()
    assert "nms:recipient: database structure updated" in page.locator("ul.messagelist").inner_text()
    for alias, table in (("cloud", "NmsRecipient"), ("default", "NmsRecipientStg")):
        assert {"sloyalty", "sdistrict"} <= columns_of(alias, table)

    # A recipient with the custom field, staged then synchronized, shows in both browsers.
    services.records_ingest(schema_id="nms:recipientStg", user=make_user("ingester", "ingest"),
                            records=[record({"email": "ann@example.com", "loyalty": "gold"})])
    staging_sync(schema=Schema.objects.get(namespace="nms", name="recipient"), trigger="command", user=SYSTEM)

    base = Schema.objects.get(namespace="nms", name="recipient")
    for kind in ("staged", "cloud"):
        page.goto(f"{live_server.url}/admin/staging/schema/{base.pk}/{kind}/")
        screenshot(page, f"recipient_{kind}")
        headers = page.locator("#result_list thead").text_content()  # as written, not upper-cased by CSS
        assert "loyalty" in headers and "location/@district" in headers and "location/@city" in headers, headers
        assert "gold" in page.locator("#result_list tbody").inner_text()

    # The browser asks for /favicon.ico, which the admin does not serve: not an error of these pages.
    assert [error for error in console_errors if "favicon.ico" not in str(error[2])] == []
