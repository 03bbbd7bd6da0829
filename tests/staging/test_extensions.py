"""Extension schemas in the registry, and the DDL of the real data models' constructs, applied to the
real databases (SQLite, or PostgreSQL in CI's second leg): plan, apply, plan again = nothing.

Schemas written for these tests, modelled on the constructs of Adobe's public pages
https://experienceleague.adobe.com/docs/campaign-classic/using/configuring-campaign-classic/editing-schemas/extending-a-schema.html
and .../schema-reference/database-mapping.html.
"""

import pytest
from django.db import connections

from campaignsite.errors import Conflict, InvalidInput, SchemaInvalid, StructureRefused
from staging import ddl, services
from staging.models import Schema, StructureState
from staging.sync import staging_sync
from tests.conftest import BOTH_DATABASES

from .conftest import make_user, record
from campaignsite.permissions import SYSTEM

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

EXTENSION = """<srcSchema namespace="cus" name="recipient" extendedSchema="nms:recipient" label="Our recipients">
  <element name="recipient">
    <dbindex name="branch"><keyfield xpath="@branch"/></dbindex>
    <attribute name="branch" type="long" label="Branch code"/>
    <attribute name="loyalty" type="string" length="20" label="Loyalty tier"/>
    <attribute name="email" length="320"/>
    <element name="location"><attribute name="district" length="40"/></element>
  </element>
</srcSchema>"""
COMPANY = """<srcSchema namespace="cus" name="company"><element name="company" autopk="true" autouuid="true">
  <attribute name="name" length="80"/></element></srcSchema>"""
CONTACT = """<srcSchema namespace="cus" name="contact"><element name="contact" autopk="true" autouuid="true">
  <attribute name="email" length="80"/>
  <attribute name="notes" type="memo" xml="true"/>
  <element name="location"><attribute name="city" length="50"/></element>
  <element name="company" type="link" target="cus:company"/>
</element></srcSchema>"""
LOG = """<srcSchema namespace="cus" name="visitLog"><element name="visitLog">
  <attribute name="at" type="datetime"/><attribute name="page" length="200"/></element></srcSchema>"""
VIEW = """<srcSchema namespace="cus" name="report"><element name="report" view="true" sqltable="CusReportSource">
  <attribute name="total" type="double"/></element></srcSchema>"""


def columns_of(alias: str, table: str) -> set[str] | None:
    state = ddl.inspect_table(connections[alias], table)
    return None if state is None else set(state.columns)


def indexes_of(alias: str, table: str) -> set[str]:
    return set(ddl.inspect_table(connections[alias], table).indexes)


def fresh(schema: Schema) -> Schema:
    return Schema.objects.get(pk=schema.pk)


@pytest.fixture
def recipient() -> Schema:
    services.builtin_schemas_load(user=SYSTEM)
    return Schema.objects.get(namespace="nms", name="recipient")


def test_the_builtin_recipient_has_the_documented_location_columns(recipient):
    cloud = columns_of("cloud", "NmsRecipient")
    assert {"saddress1", "saddress4", "szipcode", "scity", "sstatecode", "scountrycode", "semail"} <= cloud
    assert "scity" in columns_of("default", "NmsRecipientStg")


def test_an_extension_adds_its_columns_to_the_cloud_and_staging_tables_of_the_base(recipient):
    extension = services.schema_create(source=EXTENSION, user=SYSTEM)

    recipient = fresh(recipient)
    assert extension.extends == "nms:recipient" and not extension.auto_stg
    assert recipient.structure_state == StructureState.NEEDS_UPDATE
    assert fresh(extension).structure_state == StructureState.NEEDS_UPDATE  # it follows its base
    plan = services.structure_plan(schema=extension)  # an extension's plan is its base's
    assert not plan.destructive
    assert {(s.table, s.kind) for s in plan.statements} >= {("NmsRecipient", "add_column"),
                                                             ("NmsRecipientStg", "add_column")}

    services.structure_update(schema=extension, user=SYSTEM)

    for alias, table in (("cloud", "NmsRecipient"), ("default", "NmsRecipientStg")):
        assert {"ibranch", "sloyalty", "sdistrict"} <= columns_of(alias, table)
    assert "nmsrecipient_branch" in indexes_of("cloud", "NmsRecipient")
    assert "nmsrecipientstg_branch" in indexes_of("default", "NmsRecipientStg")
    recipient = fresh(recipient)
    assert recipient.structure_state == StructureState.UP_TO_DATE
    assert services.structure_plan(schema=recipient).is_empty
    assert recipient.description.attribute("email").length == 320
    assert recipient.description.extensions == ("cus:recipient",)


def test_flat_extension_fields_ingest_and_sync_into_the_base_cloud_table(recipient):
    extension = services.schema_create(source=EXTENSION, user=SYSTEM)
    services.structure_update(schema=extension, user=SYSTEM)
    user = make_user("ingester", "ingest", "run_sync")

    services.records_ingest(schema_id="nms:recipientStg", user=user, records=[
        record({"email": "ann@example.com", "branch": "12", "loyalty": "gold"})])
    staging_sync(schema=fresh(recipient), trigger="command", user=SYSTEM)

    with connections["cloud"].cursor() as cursor:
        cursor.execute("SELECT sEmail, iBranch, sLoyalty FROM NmsRecipient")
        assert cursor.fetchall() == [("ann@example.com", 12, "gold")]


def test_ingest_names_the_base_when_called_with_the_extension_id(recipient):
    services.schema_create(source=EXTENSION, user=SYSTEM)

    with pytest.raises(InvalidInput) as excinfo:
        services.staging_schema_get(schema_id="cus:recipientStg")

    assert "extension of nms:recipient" in excinfo.value.message and "nms:recipientStg" in excinfo.value.message


def test_deleting_an_extension_is_a_destructive_structure_change_of_the_base(recipient):
    extension = services.schema_create(source=EXTENSION, user=SYSTEM)
    services.structure_update(schema=extension, user=SYSTEM)

    services.schema_delete(schema=extension, user=SYSTEM)

    recipient = fresh(recipient)
    assert recipient.structure_state == StructureState.NEEDS_UPDATE
    with pytest.raises(StructureRefused):
        services.structure_update(schema=recipient, user=SYSTEM)
    plan = services.structure_update(schema=recipient, confirm_destructive=True, user=SYSTEM)
    assert plan.destructive
    assert "ibranch" not in columns_of("cloud", "NmsRecipient")
    assert services.structure_plan(schema=fresh(recipient)).is_empty


def test_updating_an_extension_changes_the_base_fingerprint(recipient):
    extension = services.schema_create(source=EXTENSION, user=SYSTEM)
    services.structure_update(schema=extension, user=SYSTEM)
    before = fresh(recipient).target_fingerprint

    services.schema_update(schema=extension, source=EXTENSION.replace('length="20"', 'length="40"'), user=SYSTEM)

    assert fresh(recipient).target_fingerprint != before
    assert fresh(recipient).structure_state == StructureState.NEEDS_UPDATE


def test_an_extension_before_its_base_is_refused_by_name(db):
    with pytest.raises(SchemaInvalid) as excinfo:
        services.schema_create(source=EXTENSION, user=SYSTEM)

    assert excinfo.value.message == "Extension schemas of 'nms:recipient' need 'nms:recipient' loaded first."


def test_an_extension_in_a_reserved_namespace_is_refused(recipient):
    with pytest.raises(SchemaInvalid) as excinfo:
        services.schema_create(source=EXTENSION.replace('namespace="cus"', 'namespace="nms"'), user=SYSTEM)

    assert "namespace 'nms' is reserved" in excinfo.value.detail


def test_a_schema_others_extend_or_link_to_cannot_be_deleted(recipient):
    company = services.schema_create(source=COMPANY, user=SYSTEM)
    services.schema_create(source=CONTACT, user=SYSTEM)

    with pytest.raises(Conflict) as excinfo:
        services.schema_delete(schema=company, user=SYSTEM)

    assert "cus:contact" in excinfo.value.message


def test_links_sub_elements_and_xml_fields_get_their_columns_and_indexes(db):
    services.structure_update(schema=services.schema_create(source=COMPANY, user=SYSTEM), user=SYSTEM)
    contact = services.schema_create(source=CONTACT, user=SYSTEM)

    plan = services.structure_update(schema=contact, user=SYSTEM)

    assert columns_of("cloud", "CusContact") == {"ucontactid", "semail", "scity", "mdata", "ucompanyid"}
    assert "cuscontact_companyid" in indexes_of("cloud", "CusContact")
    assert any("CREATE INDEX" in s.sql for s in plan.statements)
    assert services.structure_plan(schema=fresh(contact)).is_empty


def test_a_keyless_table_has_no_primary_key_and_a_view_is_never_touched(db):
    log = services.schema_create(source=LOG, user=SYSTEM)
    services.structure_update(schema=log, user=SYSTEM)
    with connections["cloud"].cursor() as cursor:
        constraints = connections["cloud"].introspection.get_constraints(cursor, "cusvisitlog"
                                                                         if connections["cloud"].vendor == "postgresql"
                                                                         else "CusVisitLog")
    assert not any(c.get("primary_key") for c in constraints.values())
    assert services.structure_plan(schema=fresh(log)).is_empty

    report = services.schema_create(source=VIEW, user=SYSTEM)
    plan = services.structure_update(schema=report, user=SYSTEM)
    assert plan.is_empty and columns_of("cloud", "CusReportSource") is None
    assert fresh(report).structure_state == StructureState.UP_TO_DATE
