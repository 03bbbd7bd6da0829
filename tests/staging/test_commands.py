"""Schema commands: load_schema, update_structure, load_builtin_schemas."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from campaignsite.permissions import SYSTEM
from staging import services
from staging.models import Schema
from tests.conftest import BOTH_DATABASES
from tests.staging.test_api_schemas import SAMPLE, WITH_TESTCOL3, WITHOUT_TESTCOL2

ROOT = Path(__file__).resolve().parents[2]
UNKNOWN_TYPE = SAMPLE.replace('name="testcol2" type="string"', 'name="testcol2" type="text"')

db = pytest.mark.django_db(databases=BOTH_DATABASES)


def _run(name: str, *args) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def _fail(name: str, *args) -> tuple[str, str]:
    """(the CommandError's message, what the command wrote to stderr) of a run that must fail."""
    err = StringIO()
    with pytest.raises(CommandError) as error:
        call_command(name, *args, stdout=StringIO(), stderr=err)
    return str(error.value), err.getvalue()


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def _cloud_tables() -> set[str]:
    connection = connections["cloud"]
    with connection.cursor() as cursor:
        return {name.lower() for name in connection.introspection.table_names(cursor)}


# --- load_schema ----------------------------------------------------------------------------


@db
def test_load_schema_creates_the_schema_and_says_so(tmp_path):
    path = _write(tmp_path, "sample.xml", SAMPLE)

    output = _run("load_schema", str(path))

    assert output == f"{path}: created dem:sampleTable\n"
    assert Schema.objects.get().source == SAMPLE


@db
def test_load_schema_twice_reports_unchanged(tmp_path):
    path = _write(tmp_path, "sample.xml", SAMPLE)
    _run("load_schema", str(path))

    assert _run("load_schema", str(path)) == f"{path}: unchanged dem:sampleTable\n"


@db
def test_load_schema_of_a_changed_file_reports_updated(tmp_path):
    _run("load_schema", str(_write(tmp_path, "sample.xml", SAMPLE)))
    changed = _write(tmp_path, "sample.xml", WITH_TESTCOL3)

    assert _run("load_schema", str(changed)) == f"{changed}: updated dem:sampleTable\n"
    assert Schema.objects.get().source == WITH_TESTCOL3


@db
def test_load_schema_with_update_structure_creates_the_table_and_prints_the_ddl(tmp_path):
    output = _run("load_schema", str(_write(tmp_path, "sample.xml", SAMPLE)), "--update-structure")

    assert "CREATE TABLE" in output
    assert "demsampletable" in _cloud_tables()
    assert Schema.objects.get().structure_state == "current"


@db
def test_load_schema_error_names_the_file_line_and_attribute(tmp_path):
    path = _write(tmp_path, "broken.xml", UNKNOWN_TYPE)

    summary, message = _fail("load_schema", str(path))

    assert summary == f"1 of 1 file(s) failed: {path}"
    assert message.startswith(f"{path}: Schema dem:sampleTable is invalid.")
    assert "line 8" in message and "attribute 'type'" in message and "'text'" in message
    assert not Schema.objects.exists()


@db
def test_load_schema_loads_the_good_files_and_fails_for_the_bad_one(tmp_path):
    good = _write(tmp_path, "good.xml", SAMPLE)
    bad = _write(tmp_path, "bad.xml", "<srcSchema")

    summary, _ = _fail("load_schema", str(bad), str(good))

    assert summary == f"1 of 2 file(s) failed: {bad}"
    assert Schema.objects.filter(name="sampleTable").exists()


@db
def test_load_schema_of_a_missing_file_fails(tmp_path):
    _, message = _fail("load_schema", str(tmp_path / "missing.xml"))

    assert "missing.xml" in message and "No such file" in message


@db
def test_load_schema_refuses_a_file_above_schema_max_bytes(tmp_path, settings):
    settings.SCHEMA_MAX_BYTES = 4096
    path = _write(tmp_path, "big.xml", SAMPLE.replace("</element>", "<!--" + "x" * 5000 + "--></element>"))

    _, message = _fail("load_schema", str(path))

    assert f"{path}: The file is larger than SCHEMA_MAX_BYTES (4096 bytes)." in message
    assert not Schema.objects.exists()


@db
def test_load_schema_refuses_a_destructive_change_without_confirmation(tmp_path):
    _run("load_schema", str(_write(tmp_path, "sample.xml", SAMPLE)), "--update-structure")
    path = _write(tmp_path, "sample.xml", WITHOUT_TESTCOL2)

    _, message = _fail("load_schema", str(path), "--update-structure")
    output = _run("load_schema", str(path), "--update-structure", "--confirm-destructive")

    assert "would drop columns or change column types; confirm to apply" in message
    assert "DESTRUCTIVE" in output


# --- update_structure -----------------------------------------------------------------------


@db
def test_update_structure_without_names_applies_every_schema():
    services.schema_create(user=SYSTEM, source=SAMPLE)
    services.schema_create(user=SYSTEM, source=SAMPLE.replace('"sampleTable"', '"otherTable"'))

    output = _run("update_structure")

    assert "-- dem:otherTable" in output and "-- dem:sampleTable" in output
    assert {"demsampletable", "demothertable"} <= _cloud_tables()


@db
def test_update_structure_dry_run_prints_the_ddl_and_creates_nothing():
    services.schema_create(user=SYSTEM, source=SAMPLE)

    output = _run("update_structure", "dem:sampleTable", "--dry-run")

    assert "(dry run)" in output and "CREATE TABLE" in output
    assert "demsampletable" not in _cloud_tables()


@db
def test_update_structure_second_run_has_nothing_to_do():
    services.schema_create(user=SYSTEM, source=SAMPLE)
    _run("update_structure", "dem:sampleTable")

    assert "up to date" in _run("update_structure", "dem:sampleTable")


@db
def test_update_structure_of_an_unknown_schema_fails_naming_it():
    summary, message = _fail("update_structure", "dem:nothing")

    assert summary == "1 of 1 schema(s) failed: dem:nothing"
    assert "Unknown schema 'dem:nothing'" in message


@db
def test_update_structure_refuses_destructive_changes_unless_confirmed():
    schema = services.schema_create(user=SYSTEM, source=SAMPLE)
    services.structure_update(user=SYSTEM, schema=schema)
    services.schema_update(user=SYSTEM, schema=schema, source=WITHOUT_TESTCOL2)

    _, message = _fail("update_structure", "dem:sampleTable")

    assert "would drop columns" in message
    assert "DESTRUCTIVE" in _run("update_structure", "dem:sampleTable", "--confirm-destructive")


# --- load_builtin_schemas -------------------------------------------------------------------


@db
def test_load_builtin_schemas_loads_the_three_and_can_run_again():
    first = _run("load_builtin_schemas")
    second = _run("load_builtin_schemas")

    assert "nms:recipient: structure up to date, staging nms:recipientStg" in first
    assert first == second
    assert set(Schema.objects.filter(built_in=True).values_list("name", flat=True)) == {
        "recipient", "subscriptionRcp", "appSubscriptionRcp",
    }


# --- As a process -------------------------------------------------------------------------


def _manage(*args, tmp_path: Path) -> subprocess.CompletedProcess:
    # Databases of their own, so the process can never touch the developer's var/*.sqlite3.
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'local.sqlite3'}",
        "CLOUD_DATABASE_URL": f"sqlite:///{tmp_path / 'cloud.sqlite3'}",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_load_schema_exits_non_zero_on_an_invalid_file(tmp_path):
    path = _write(tmp_path, "broken.xml", UNKNOWN_TYPE)

    result = _manage("load_schema", str(path), tmp_path=tmp_path)

    assert result.returncode == 1
    assert f"{path}: Schema dem:sampleTable is invalid." in result.stderr and "line 8" in result.stderr


@pytest.mark.parametrize("command", ["load_schema", "update_structure", "load_builtin_schemas"])
def test_commands_explain_themselves_with_help(command, tmp_path):
    result = _manage(command, "--help", tmp_path=tmp_path)

    assert result.returncode == 0
    assert "schema" in result.stdout.lower()


# --- Extension schemas and ignored constructs ------------------------------------------------


@db
def test_load_schema_prints_each_warning_and_still_succeeds(tmp_path):
    from tests.staging.test_admin_models import EXTENSION

    services.builtin_schemas_load(user=SYSTEM)
    out, err = StringIO(), StringIO()

    call_command("load_schema", str(_write(tmp_path, "recipient.xml", EXTENSION)), stdout=out, stderr=err)

    assert "recipient.xml: created cus:recipient (extends nms:recipient)" in out.getvalue()
    lines = err.getvalue().splitlines()
    assert any(line.startswith("WARNING: line 6, attribute 'sysFilter': <sysFilter> is kept in the source and "
                               "ignored") for line in lines), lines
    assert any(line.startswith("WARNING: line 7, attribute 'length', value '3': length has no effect on 'score'")
               for line in lines), lines
    assert Schema.objects.get(namespace="cus", name="recipient").extends == "nms:recipient"


@db
def test_update_structure_of_an_extension_updates_the_tables_of_its_base(tmp_path):
    from tests.staging.test_admin_models import EXTENSION
    from tests.staging.test_extensions import columns_of

    services.builtin_schemas_load(user=SYSTEM)
    _run("load_schema", str(_write(tmp_path, "recipient.xml", EXTENSION)))

    out = _run("update_structure", "cus:recipient")

    assert "cus:recipient is an extension: updating the structure of nms:recipient" in out
    assert "nmsrecipient" in out.lower() and "sdistrict" in out.lower()
    for alias, table in (("cloud", "NmsRecipient"), ("default", "NmsRecipientStg")):
        assert {"sloyalty", "sdistrict", "iscore", "mdata"} <= columns_of(alias, table)
    assert services.structure_plan(schema=Schema.objects.get(namespace="nms", name="recipient")).is_empty
