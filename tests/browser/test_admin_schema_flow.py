"""The issue's user flow through the admin in a real browser: paste the seed schema, update the
structure, tick autoStg in the list, update again, and find both tables."""

import os
import re

import pytest
from django.db import connections

from staging import ddl
from tests.conftest import BOTH_DATABASES
from tests.staging.test_srcschema import seed_schemas

pytestmark = [pytest.mark.browser, pytest.mark.django_db(databases=BOTH_DATABASES, transaction=True)]

SCREENSHOTS = os.environ.get("SCREENSHOT_DIR")  # set it to keep pictures of the pages


def columns_of(alias: str, table: str) -> set[str] | None:
    state = ddl.inspect_table(connections[alias], table)
    return None if state is None else set(state.columns)


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)


def apply_structure(page, expected_table: str) -> None:
    """On the confirmation page: check the DDL creates `expected_table`, then apply it."""
    ddl_text = page.locator("pre.staging-ddl").inner_text()
    assert re.search(rf'CREATE TABLE "{expected_table}"', ddl_text, re.I), ddl_text
    page.get_by_role("button", name="Apply").click()
    page.wait_for_load_state()
    assert "database structure updated" in page.locator("ul.messagelist").inner_text()


def test_seed_schema_flow_creates_cloud_and_staging_tables(live_server, browser_page, django_user_model):
    django_user_model.objects.create_superuser("admin", "admin@example.com", "secret-pw")
    page = browser_page

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "secret-pw")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/staging/schema/add/")
    page.fill("#id_source", seed_schemas()[0])
    page.click("input[name=_save]")
    assert "dem:sampleTable" in page.locator("#result_list").inner_text()

    page.check("input[name=_selected_action]")
    page.select_option("select[name=action]", "update_structure")
    page.click("button[name=index]")
    screenshot(page, "structure_confirmation")
    apply_structure(page, "DemSampleTable")

    page.goto(f"{live_server.url}/admin/staging/schema/")
    page.check("#id_form-0-auto_stg")
    page.click("input[name=_save]")
    assert "needs update" in page.locator("#result_list").inner_text()
    screenshot(page, "changelist")

    page.get_by_role("link", name="dem:sampleTable", exact=True).click()
    page.get_by_role("link", name="Update database structure").click()
    apply_structure(page, "DemSampleTableStg")

    assert columns_of("cloud", "DemSampleTable") == {"usampletableid", "stestcol1", "stestcol2"}
    assert {"usampletableid", "stestcol1", "stestcol2", "idelete", "tslastmodified", "sstgstatus", "istgseq",
            "sstgoperation", "mstgcolumns", "istgattempts", "mstgerror", "tsstgsynced"} <= columns_of(
        "default", "DemSampleTableStg"
    )
    assert columns_of("cloud", "DemSampleTableStg") is None
