"""The schema admin with real data models: extensions of nms:recipient, sub-elements, links, XML fields,
key-less tables and views, driven through Django's test client against the real databases.

Schemas written for these tests, modelled on the constructs of Adobe's public pages
https://experienceleague.adobe.com/docs/campaign-classic/using/configuring-campaign-classic/editing-schemas/extending-a-schema.html
and .../schema-reference/database-mapping.html.
"""

import pytest
from django.contrib import messages
from django.db import connections
from django.urls import reverse

from campaignsite.permissions import SYSTEM
from staging import ddl, services
from staging.models import Schema, StructureState
from tests.conftest import BOTH_DATABASES

from .test_admin import ADD, change_url, page_text, structure_url, superuser_client  # noqa: F401
from .test_extensions import COMPANY, CONTACT, LOG, VIEW, columns_of

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

# An extension with a custom field, a field of the location sub-element, an XML field, and two constructs
# that are kept but ignored (a sysFilter, a length on a number).
EXTENSION = """<srcSchema namespace="cus" name="recipient" extendedSchema="nms:recipient" label="Our recipients">
  <element name="recipient">
    <attribute name="loyalty" type="string" length="20" label="Loyalty tier"/>
    <attribute name="notes" type="memo" xml="true" label="Notes"/>
    <element name="location"><attribute name="district" length="40" label="District"/></element>
    <sysFilter><condition expr="@loyalty IS NOT NULL"/></sysFilter>
    <attribute name="score" type="long" length="3"/>
  </element>
</srcSchema>"""


@pytest.fixture
def recipient() -> Schema:
    services.builtin_schemas_load(user=SYSTEM)
    return Schema.objects.get(namespace="nms", name="recipient")


@pytest.fixture
def extension(recipient) -> Schema:
    return services.schema_create(source=EXTENSION, user=SYSTEM)


def test_the_base_change_page_shows_its_extensions_merged_columns_and_warnings(superuser_client, recipient,
                                                                             extension):
    response = superuser_client.get(change_url(recipient))

    assert response.status_code == 200
    text = page_text(response)
    assert f'href="{change_url(extension)}"' in text and "cus:recipient" in text
    # The merged description: xpath, type, SQL column, and which document declared it.
    assert "<td><code>location/@district</code></td><td>string</td><td>40</td><td><code>sDistrict</code></td>" in text
    assert "<td><code>location/@city</code></td>" in text and "<code>sCity</code>" in text
    assert ("<td><code>@loyalty</code></td><td>string</td><td>20</td><td><code>sLoyalty</code></td><td></td>"
            "<td>cus:recipient</td>") in text
    assert "<td><code>@email</code></td>" in text and "<td>nms:recipient</td>" in text
    assert "<code>@notes</code>" in text and "mData" in text  # the XML field, stored in mData
    warnings = text.split('id="staging-warnings"', 1)[1].split("</div>", 1)[0]
    assert "<sysFilter> is kept in the source and ignored" in warnings
    assert "length has no effect on 'score'" in warnings


def test_the_extension_change_page_links_its_base_and_shows_its_own_warnings(superuser_client, recipient,
                                                                           extension):
    text = page_text(superuser_client.get(change_url(extension)))

    assert f'href="{change_url(recipient)}" class="staging-base-link"' in text
    assert "NmsRecipient (the table of nms:recipient)" in text
    assert "NmsRecipientStg (the staging table of nms:recipient, local database)" in text
    assert "<td><code>location/@district</code></td>" in text
    assert 'id="staging-warnings"' in text and "<sysFilter>" in text


def test_a_schema_without_warnings_shows_no_warning_block(superuser_client, recipient):
    assert 'id="staging-warnings"' not in page_text(superuser_client.get(change_url(recipient)))


def test_adding_an_extension_in_the_editor_saves_it_and_shows_its_warnings_as_warnings(superuser_client, recipient):
    response = superuser_client.post(ADD, {"source": EXTENSION, "_save": "Save"}, follow=True)

    assert response.status_code == 200
    extension = Schema.objects.get(namespace="cus", name="recipient")
    assert extension.extends == "nms:recipient"
    shown = [(m.level, m.message) for m in response.context["messages"]]
    warned = [text for level, text in shown if level == messages.WARNING]
    assert any("<sysFilter> is kept in the source and ignored" in text for text in warned)
    assert any("length has no effect on 'score'" in text for text in warned)
    assert not any(level == messages.ERROR for level, _ in shown)
    assert Schema.objects.get(pk=recipient.pk).structure_state == StructureState.NEEDS_UPDATE


def test_the_structure_update_of_an_extension_shows_and_applies_the_ddl_of_its_base(superuser_client, recipient,
                                                                                  extension):
    page = page_text(superuser_client.get(structure_url(extension)))

    assert "<h2>nms:recipient " in page and "Selected through its extension cus:recipient" in page
    assert 'ALTER TABLE "NmsRecipient" ADD COLUMN "sDistrict"' in page.replace('"nmsrecipient"', '"NmsRecipient"') \
        or 'ALTER TABLE "nmsrecipient" ADD COLUMN "sdistrict"' in page
    assert "NmsRecipientStg" in page or "nmsrecipientstg" in page

    # Both selected: the base's statements are planned and applied once.
    both = page_text(superuser_client.get(structure_url(extension, recipient)))
    assert both.count("<h2>nms:recipient ") == 1

    response = superuser_client.post(reverse("admin:staging_schema_structure"), {"ids": str(extension.pk)})

    assert response.status_code == 302
    for alias, table in (("cloud", "NmsRecipient"), ("default", "NmsRecipientStg")):
        assert {"sloyalty", "sdistrict", "iscore", "mdata"} <= columns_of(alias, table)
    assert Schema.objects.get(pk=recipient.pk).structure_state == StructureState.UP_TO_DATE


def test_browsers_show_sub_element_columns_and_an_extension_browses_its_base(superuser_client, recipient, extension):
    services.structure_update(schema=extension, user=SYSTEM)

    for name in ("admin:staging_schema_staged", "admin:staging_schema_cloud"):
        page = page_text(superuser_client.get(reverse(name, args=[recipient.pk])))
        assert "<span>location/@district</span></div><small>sDistrict</small>" in page
        assert "<span>location/@city</span></div><small>sCity</small>" in page
        assert "<span>loyalty</span>" in page and "<span>XML fields</span>" in page
        redirected = superuser_client.get(reverse(name, args=[extension.pk]) + "?q=x")
        assert redirected.status_code == 302
        assert redirected["Location"] == reverse(name, args=[recipient.pk]) + "?q=x"


def test_links_and_xml_fields_are_shown_on_the_change_page(superuser_client):
    services.structure_update(schema=services.schema_create(source=COMPANY, user=SYSTEM), user=SYSTEM)
    contact = services.schema_create(source=CONTACT, user=SYSTEM)

    text = page_text(superuser_client.get(change_url(contact)))

    links = text.split("staging-links", 1)[1].split("</table>", 1)[0]
    assert "<td><code>company</code></td><td>cus:company</td><td>1</td><td>company-id → id</td>" in links
    assert "<td><code>@company-id</code></td><td>uuid</td>" in text  # the foreign key is a column
    assert "staging-xml-fields" in text and "<code>@notes</code>" in text


def test_the_cloud_browser_of_a_keyless_table_shows_its_first_rows_without_paging(superuser_client):
    log = services.schema_create(source=LOG, user=SYSTEM)
    services.structure_update(schema=log, user=SYSTEM)
    vendor = connections["cloud"].vendor
    with connections["cloud"].cursor() as cursor:
        for page in ("/home", "/about"):
            cursor.execute(f"INSERT INTO {ddl.quote('CusVisitLog', vendor)} ({ddl.quote('sPage', vendor)}) "
                           "VALUES (%s)", [page])

    response = superuser_client.get(reverse("admin:staging_schema_cloud", args=[log.pk]))

    assert response.status_code == 200
    text = page_text(response)
    assert "/home" in text and "/about" in text
    assert "It has no primary key" in text and 'id="staging-next"' not in text
    assert 'class="staging-row-link"' not in text
    # A forged keyset position is ignored rather than turned into SQL.
    browser = reverse("admin:staging_schema_cloud", args=[log.pk])
    assert superuser_client.get(browser + "?after=%5B%5D").status_code == 200
    assert superuser_client.get(reverse("admin:staging_schema_cloud_row", args=[log.pk]) + "?key=x").status_code == 404
    assert "(no primary key)" in page_text(superuser_client.get(change_url(log)))


def test_the_cloud_browser_reads_the_table_a_view_maps_and_a_view_has_no_staging(superuser_client):
    report = services.schema_create(source=VIEW, user=SYSTEM)
    browser = reverse("admin:staging_schema_cloud", args=[report.pk])

    missing = page_text(superuser_client.get(browser))
    assert "The view cus:report could not read CusReportSource" in missing

    vendor = connections["cloud"].vendor
    with connections["cloud"].cursor() as cursor:
        cursor.execute(f"CREATE TABLE {ddl.quote('CusReportSource', vendor)} ({ddl.quote('dTotal', vendor)} FLOAT)")
        cursor.execute(f"INSERT INTO {ddl.quote('CusReportSource', vendor)} VALUES (42.5)")

    text = page_text(superuser_client.get(browser))
    assert "42.5" in text and "View <code>CusReportSource</code>" in text
    assert "views have no staging" in page_text(
        superuser_client.get(reverse("admin:staging_schema_staged", args=[report.pk])))
    assert "view: an existing table, never created" in page_text(superuser_client.get(change_url(report)))


def test_schema_qualified_table_names_are_quoted_part_by_part():
    assert ddl.quote("public.CusReport", "postgresql") == '"public"."cusreport"'
    assert ddl.quote("public.CusReport", "sqlite") == '"public"."CusReport"'
    assert ddl.quote("CusReport", "postgresql") == '"cusreport"'


def test_a_view_on_a_schema_qualified_table_is_browsed_on_postgresql(superuser_client):
    connection = connections["cloud"]
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no schemas to qualify a table with")
    source = VIEW.replace('sqltable="CusReportSource"', 'sqltable="public.CusReportQualified"')
    report = services.schema_create(source=source, user=SYSTEM)
    with connection.cursor() as cursor:
        cursor.execute('CREATE TABLE public.cusreportqualified ("dtotal" FLOAT)')
        cursor.execute("INSERT INTO public.cusreportqualified VALUES (7.25)")

    text = page_text(superuser_client.get(reverse("admin:staging_schema_cloud", args=[report.pk])))

    assert "7.25" in text and "View <code>public.CusReportQualified</code>" in text


def test_a_key_search_names_a_sub_element_field_by_its_xpath(superuser_client):
    source = """<srcSchema namespace="cus" name="shop"><element name="shop">
      <key name="place" internal="true"><keyfield xpath="location/@city"/><keyfield xpath="@name"/></key>
      <attribute name="name" length="40"/>
      <element name="location"><attribute name="city" length="40"/></element>
    </element></srcSchema>"""
    shop = services.schema_create(source=source, user=SYSTEM)
    services.structure_update(schema=shop, user=SYSTEM)
    vendor = connections["cloud"].vendor
    with connections["cloud"].cursor() as cursor:
        for city, name in (("Paris", "Louvre"), ("Lyon", "Louvre")):
            cursor.execute(f"INSERT INTO {ddl.quote('CusShop', vendor)} ({ddl.quote('sCity', vendor)}, "
                           f"{ddl.quote('sName', vendor)}) VALUES (%s, %s)", [city, name])
    browser = reverse("admin:staging_schema_cloud", args=[shop.pk])

    found = page_text(superuser_client.get(browser, {"q": "location/@city=Lyon, @name=Louvre"}))

    assert "1 row with this key" in found and "Lyon" in found and "Paris" not in found
    assert "Search is an exact match on a key (location/@city, @name" in found
