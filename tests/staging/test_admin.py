"""The schema admin, driven through Django's test client against the real databases."""

import html
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.urls import reverse

from campaignsite.permissions import SYSTEM
from staging import ddl, services
from staging.models import Schema, StructureState
from tests.conftest import BOTH_DATABASES

from .test_srcschema import schema_xml, seed_schemas

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

CHANGELIST = reverse("admin:staging_schema_changelist")
ADD = reverse("admin:staging_schema_add")
STRUCTURE = reverse("admin:staging_schema_structure")


def change_url(schema: Schema) -> str:
    return reverse("admin:staging_schema_change", args=[schema.pk])


def structure_url(*schemas: Schema) -> str:
    return f"{STRUCTURE}?ids={','.join(str(s.pk) for s in schemas)}"


def columns_of(alias: str, table: str) -> list[str] | None:
    state = ddl.inspect_table(connections[alias], table)
    return None if state is None else sorted(state.columns)


def user_with(*codenames: str) -> User:
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="staging", codename__in=codenames))
    return user


def changelist_post(schema: Schema, *, auto_stg: bool) -> dict:
    data = {
        "form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000", "form-0-id": str(schema.pk), "_save": "Save",
    }
    if auto_stg:
        data["form-0-auto_stg"] = "on"
    return data


def page_text(response) -> str:
    """The page as a reader sees its markup: entities decoded, whitespace runs collapsed."""
    return re.sub(r"\s+", " ", html.unescape(response.content.decode()))


@pytest.fixture
def sample() -> Schema:
    return services.schema_create(user=SYSTEM, source=seed_schemas()[0])


@pytest.fixture
def superuser_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


# --- Every page answers ------------------------------------------------------------------

def test_every_schema_admin_page_answers_for_a_superuser(superuser_client, sample):
    for url in (reverse("admin:index"), reverse("admin:app_list", args=["staging"]), CHANGELIST, ADD,
                change_url(sample), structure_url(sample), reverse("admin:staging_schema_history", args=[sample.pk]),
                reverse("admin:staging_schema_delete", args=[sample.pk])):
        assert superuser_client.get(url).status_code == 200, url


def test_changelist_shows_id_label_auto_stg_toggle_and_structure_state(superuser_client, sample):
    response = superuser_client.get(CHANGELIST)

    text = page_text(response)
    assert "dem:sampleTable" in text and "Sample Table" in text
    assert 'name="form-0-auto_stg"' in text
    assert 'staging-badge--never">never applied' in text


def test_change_page_shows_what_was_parsed_from_the_source(superuser_client, sample):
    text = page_text(superuser_client.get(change_url(sample)))

    assert "DemSampleTable" in text
    assert "<td><code>@testcol1</code></td><td>string</td><td>255</td><td><code>sTestcol1</code></td>" in text
    assert "<code>uSampleTableId</code>" in text
    assert "primary key: @id" in text
    assert "Update database structure" in text


# --- Permissions -------------------------------------------------------------------------

def test_staff_without_permissions_is_refused_the_schema_pages(client, sample):
    client.force_login(user_with())

    assert client.get(CHANGELIST).status_code == 403
    assert client.get(change_url(sample)).status_code == 403
    assert client.get(structure_url(sample)).status_code == 403
    assert client.post(structure_url(sample), {"ids": str(sample.pk)}).status_code == 403
    assert columns_of("cloud", "DemSampleTable") is None


def test_change_permission_alone_does_not_reach_structure_update(client, sample):
    client.force_login(user_with("view_schema", "change_schema"))

    change_page = page_text(client.get(change_url(sample)))
    changelist = page_text(client.get(CHANGELIST))

    assert "Update database structure" not in change_page
    assert 'value="update_structure"' not in changelist
    assert 'value="enable_staging"' in changelist
    assert client.get(structure_url(sample)).status_code == 403
    response = client.post(CHANGELIST, {"action": "update_structure", "_selected_action": [sample.pk]}, follow=True)
    assert response.redirect_chain == [(CHANGELIST, 302)]
    assert "No action selected" in page_text(response)


def test_update_structure_permission_reaches_the_confirmation_page(client, sample):
    client.force_login(user_with("view_schema", "update_structure"))

    assert client.get(structure_url(sample)).status_code == 200


def test_built_in_schema_cannot_be_deleted_but_can_be_edited(superuser_client):
    recipient = services.schema_create(user=SYSTEM, 
        source=schema_xml('    <attribute name="email" type="string" length="80"/>\n', namespace="nms",
                          name="thing"),
        built_in=True,
    )

    assert superuser_client.get(reverse("admin:staging_schema_delete", args=[recipient.pk])).status_code == 403
    response = superuser_client.post(change_url(recipient), {"source": recipient.source.replace('"80"', '"120"')})
    assert response.status_code == 302
    recipient.refresh_from_db()
    assert recipient.description.attribute("email").length == 120


# --- The editor --------------------------------------------------------------------------

def test_adding_the_seed_schema_through_the_editor_saves_it(superuser_client):
    response = superuser_client.post(ADD, {"source": seed_schemas()[0]})

    assert response.status_code == 302
    schema = Schema.objects.get()
    assert (schema.schema_id, schema.label, schema.auto_stg) == ("dem:sampleTable", "Sample Table", False)
    assert schema.source == seed_schemas()[0]
    assert schema.modified_by.username == "admin"
    assert schema.structure_state == StructureState.NEVER_APPLIED


@pytest.mark.parametrize(
    "source, expected",
    [
        ('<srcSchema namespace="cus" name="thing"><element name="thing">', "line 1"),
        (schema_xml('    <attribute name="size" type="bigstring"/>\n'), "attribute 'type', value 'bigstring'"),
        (schema_xml(namespace="nms"), "namespace 'nms' is reserved"),
    ],
    ids=["malformed XML", "unknown type", "reserved namespace"],
)
def test_bad_source_is_shown_inline_and_nothing_is_saved(superuser_client, source, expected):
    response = superuser_client.post(ADD, {"source": source})

    assert response.status_code == 200
    errors = page_text(response).split('class="errorlist', 1)[1]
    assert expected in errors
    assert Schema.objects.count() == 0


def test_changing_the_schema_id_in_the_editor_is_refused(superuser_client, sample):
    response = superuser_client.post(change_url(sample), {"source": sample.source.replace('name="sampleTable"',
                                                                                           'name="otherTable"')})

    assert response.status_code == 200
    assert "cannot change" in page_text(response)
    sample.refresh_from_db()
    assert sample.name == "sampleTable"


def test_ticking_auto_stg_in_the_editor_rewrites_the_source(superuser_client, sample):
    response = superuser_client.post(change_url(sample), {"source": sample.source, "auto_stg": "on"})

    assert response.status_code == 302
    sample.refresh_from_db()
    assert sample.auto_stg
    assert '<element autoStg="true" autopk="true"' in sample.source


def test_ticking_auto_stg_when_adding_a_local_schema_saves_nothing(superuser_client):
    local = schema_xml(element_attrs='autopk="true" autouuid="true" dataSource="default"')

    response = superuser_client.post(ADD, {"source": local, "auto_stg": "on"})

    assert response.status_code == 200
    assert 'class="errorlist' in page_text(response)
    assert Schema.objects.count() == 0


# --- Database structure ------------------------------------------------------------------

def test_confirmation_page_shows_the_ddl_and_applying_creates_the_table(superuser_client, sample):
    page = page_text(superuser_client.get(structure_url(sample)))

    assert 'create table "demsampletable"' in page.lower()
    assert "confirm_destructive" not in page
    response = superuser_client.post(STRUCTURE, {"ids": str(sample.pk), "apply": "Apply"})

    assert response.status_code == 302
    assert columns_of("cloud", "DemSampleTable") == ["stestcol1", "stestcol2", "usampletableid"]
    sample.refresh_from_db()
    assert sample.structure_state == StructureState.UP_TO_DATE


def test_update_structure_action_leads_to_the_confirmation_page(superuser_client, sample):
    response = superuser_client.post(CHANGELIST, {"action": "update_structure", "_selected_action": [sample.pk]})

    assert response.status_code == 302
    assert response["Location"] == structure_url(sample)


def test_ticking_auto_stg_in_the_list_then_updating_creates_the_staging_table(superuser_client, sample):
    services.structure_update(user=SYSTEM, schema=sample)

    response = superuser_client.post(CHANGELIST, changelist_post(sample, auto_stg=True))
    assert response.status_code == 302
    sample.refresh_from_db()
    assert sample.auto_stg and 'autoStg="true"' in sample.source
    assert sample.structure_state == StructureState.NEEDS_UPDATE
    page = page_text(superuser_client.get(structure_url(sample)))
    assert 'create table "demsampletablestg"' in page.lower()
    superuser_client.post(STRUCTURE, {"ids": str(sample.pk), "apply": "Apply"})

    assert {"usampletableid", "stestcol1", "stestcol2", "idelete", "tslastmodified", "sstgstatus"} <= set(
        columns_of("default", "DemSampleTableStg")
    )


def test_list_toggle_error_is_shown_in_the_row(superuser_client):
    local = services.schema_create(user=SYSTEM, source=schema_xml(element_attrs='autopk="true" autouuid="true" dataSource="x"'))

    response = superuser_client.post(CHANGELIST, changelist_post(local, auto_stg=True))

    assert response.status_code == 200
    assert 'class="errorlist' in page_text(response)
    local.refresh_from_db()
    assert not local.auto_stg


def list_post(*changes: tuple[Schema, bool]) -> dict:
    """The changelist's save with one row per (schema, ticked)."""
    data = {"form-TOTAL_FORMS": str(len(changes)), "form-INITIAL_FORMS": str(len(changes)),
            "form-MIN_NUM_FORMS": "0", "form-MAX_NUM_FORMS": "1000", "_save": "Save"}
    for index, (schema, ticked) in enumerate(changes):
        data[f"form-{index}-id"] = str(schema.pk)
        if ticked:
            data[f"form-{index}-auto_stg"] = "on"
    return data


def test_list_save_changes_no_row_when_the_service_refuses_one_and_shows_the_error_on_that_row(superuser_client,
                                                                                                sample):
    no_uuid = services.schema_create(user=SYSTEM, source=schema_xml(element_attrs='autopk="true"', name="nouuid"))

    response = superuser_client.post(CHANGELIST, list_post((sample, True), (no_uuid, True)))

    assert response.status_code == 200
    sample.refresh_from_db()
    no_uuid.refresh_from_db()
    assert not sample.auto_stg and 'autoStg="true"' not in sample.source  # the first row was not kept
    assert not no_uuid.auto_stg
    errors = {form.instance.pk: form.errors for form in response.context["cl"].formset.forms}
    assert errors[sample.pk] == {}
    assert "autouuid" in str(errors[no_uuid.pk]["auto_stg"])
    assert not LogEntry.objects.exists()


def test_list_save_applies_every_changed_row_and_logs_each_change(superuser_client, sample):
    other = services.schema_create(user=SYSTEM, source=schema_xml(name="other"))

    response = superuser_client.post(CHANGELIST, list_post((sample, True), (other, True)))

    assert response.status_code == 302
    sample.refresh_from_db()
    other.refresh_from_db()
    assert sample.auto_stg and other.auto_stg
    logged = {(entry.object_id, entry.get_change_message()) for entry in LogEntry.objects.all()}
    assert logged == {(str(sample.pk), "Changed AutoStg."), (str(other.pk), "Changed AutoStg.")}
    assert sample.modified_by.username == "admin"


def test_enable_staging_action_rewrites_the_source_and_says_to_update(superuser_client, sample):
    response = superuser_client.post(
        CHANGELIST, {"action": "enable_staging", "_selected_action": [sample.pk]}, follow=True
    )

    sample.refresh_from_db()
    assert sample.auto_stg
    assert "Update the database structure" in page_text(response)


def test_destructive_change_requires_the_checkbox(superuser_client):
    two_columns = '    <attribute name="a" type="string"/>\n    <attribute name="b" type="long"/>\n'
    schema = services.schema_create(user=SYSTEM, source=schema_xml(two_columns))
    services.structure_update(user=SYSTEM, schema=schema)
    services.schema_update(user=SYSTEM, schema=schema, source=schema_xml('    <attribute name="a" type="string"/>\n'))

    page = page_text(superuser_client.get(structure_url(schema)))
    assert '<mark class="staging-destructive">' in page
    assert "I understand this drops columns / changes types" in page
    refused = superuser_client.post(STRUCTURE, {"ids": str(schema.pk), "apply": "Apply"})
    assert refused.status_code == 200 and 'class="errorlist' in refused.content.decode()
    assert "ib" in columns_of("cloud", "CusThing")

    applied = superuser_client.post(STRUCTURE, {"ids": str(schema.pk), "apply": "Apply", "confirm_destructive": "on"})

    assert applied.status_code == 302
    assert columns_of("cloud", "CusThing") == ["sa", "uthingid"]


def test_structure_refusal_is_reported_with_the_unsynced_row_count(superuser_client, sample):
    sample = services.schema_set_auto_stg(user=SYSTEM, schema=sample, enabled=True)
    services.structure_update(user=SYSTEM, schema=sample)
    with connections["default"].cursor() as cursor:
        cursor.execute("INSERT INTO DemSampleTableStg (uSampleTableId, sTestcol1) VALUES ('A1', 'x')")
    sample = services.schema_set_auto_stg(user=SYSTEM, schema=sample, enabled=False)

    response = superuser_client.post(STRUCTURE, {"ids": str(sample.pk), "apply": "Apply"}, follow=True)

    assert "1 row(s) of dem:sampleTableStg are not synchronized yet" in page_text(response)
    assert columns_of("default", "DemSampleTableStg") is not None


def test_deleting_a_schema_with_unsynced_rows_is_refused_with_the_count(admin_client):
    schema = services.schema_create(user=SYSTEM, source=seed_schemas()[1])
    services.structure_update(user=SYSTEM, schema=schema)
    with connections["default"].cursor() as cursor:
        cursor.execute("INSERT INTO DemSampleTableStg (uSampleTableId) VALUES ('waiting')")

    response = admin_client.post(f"/admin/staging/schema/{schema.pk}/delete/", {"post": "yes"}, follow=True)

    assert Schema.objects.filter(pk=schema.pk).exists()
    assert "1 staged row(s) are not synchronized yet" in response.content.decode()
