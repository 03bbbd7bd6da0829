"""manage.py ingest: xml, jsonl and csv files, errors naming the line, flat memory on big files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import make_user, rows_of

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

ROOT = Path(__file__).resolve().parents[2]


def run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("ingest", *map(str, args), stdout=out, stderr=StringIO())
    return out.getvalue()


def test_an_xml_collection_file_is_ingested_in_batches(sample, tmp_path):
    path = tmp_path / "records.xml"
    path.write_text('<sampleTableStg-collection xtkschema="dem:sampleTableStg">\n'
                    + "".join(f'  <sampleTableStg testcol1="v{i}"/>\n' for i in range(7))
                    + "</sampleTableStg-collection>\n")
    out = run("dem:sampleTable", path, "--batch-size", 3)
    assert "Ingested 7 record(s) into dem:sampleTableStg in 3 batch(es)" in out
    assert [r["values"]["testcol1"] for r in rows_of(sample)] == [f"v{i}" for i in range(7)]


def test_a_single_record_xml_document_is_ingested(sample, tmp_path):
    path = tmp_path / "one.xml"
    path.write_text('<sampleTableStg _key="@id" id="ABC12345" testcol1="a" xtkschema="dem:sampleTableStg"/>')
    run("dem:sampleTableStg", path)
    assert [r["id"] for r in rows_of(sample)] == ["ABC12345"]


def test_a_jsonl_file_is_ingested_and_ext_updates_in_place(sample, tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"id": "A", "testcol1": "1", "testcol2": "2"}\n\n{"id": "B", "testcol1": "3"}\n')
    run("dem:sampleTable", path, "--ext")
    path.write_text('{"id": "A", "testcol1": "1 (updated)"}\n')
    run("dem:sampleTable", path, "--ext")
    values = {r["id"]: r["values"] for r in rows_of(sample)}
    assert values["A"] == {"id": "A", "testcol1": "1 (updated)", "testcol2": "2"}


def test_a_csv_file_with_key_and_operation_columns_is_ingested(sample, tmp_path):
    path = tmp_path / "records.csv"
    path.write_text('id,testcol1,testcol2,_key,_operation\nA,"one, with comma",x,@id,\nB,,y,@id,delete\n')
    with pytest.raises(CommandError):  # a delete carrying testcol2 is refused
        run("dem:sampleTable", path, "--ext")
    path.write_text('id,testcol1,_key,_operation\nA,"one, with comma",@id,\nB,,@id,delete\n')
    run("dem:sampleTable", path, "--ext")
    rows = {r["id"]: r for r in rows_of(sample)}
    assert rows["A"]["values"]["testcol1"] == "one, with comma"
    assert rows["B"]["operation"] == "delete"


def test_an_error_names_its_line_and_earlier_batches_stay_committed(sample, tmp_path):
    lines = [json.dumps({"testcol1": f"v{i}"}) for i in range(10)]
    lines[7] = json.dumps({"testcol1": "v7", "unknown": "x"})
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CommandError) as caught:
        run("dem:sampleTable", path, "--batch-size", 5)
    message = str(caught.value)
    assert "line 8" in message and "unknown" in message and "record 7" in message
    assert "5 record(s) in 1 earlier batch(es) were committed" in message
    assert len(rows_of(sample)) == 5


def test_malformed_xml_names_its_line(sample, tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text('<sampleTableStg-collection>\n<sampleTableStg testcol1="a"/>\n<sampleTableStg testcol1=/>\n'
                    "</sampleTableStg-collection>")
    with pytest.raises(CommandError) as caught:
        run("dem:sampleTable", path)
    assert "line 3" in str(caught.value)


def test_a_csv_row_with_missing_cells_names_its_line(sample, tmp_path):
    path = tmp_path / "records.csv"
    path.write_text("testcol1,testcol2\na,b\nc\n")
    with pytest.raises(CommandError) as caught:
        run("dem:sampleTable", path)
    assert "Line 3" in str(caught.value)


def test_a_user_without_the_permission_is_refused(sample, tmp_path):
    make_user("reader")
    path = tmp_path / "records.jsonl"
    path.write_text('{"testcol1": "a"}\n')
    with pytest.raises(CommandError) as caught:
        run("dem:sampleTable", path, "--user", "reader")
    assert "staging.ingest" in str(caught.value)
    make_user("loader", "ingest")
    run("dem:sampleTable", path, "--user", "loader")
    assert len(rows_of(sample)) == 1


def test_an_unknown_format_is_refused(sample, tmp_path):
    path = tmp_path / "records.txt"
    path.write_text("x")
    with pytest.raises(CommandError, match="--format"):
        run("dem:sampleTable", path)


# --- Bounded memory: a subprocess ingests files of two sizes; peak RSS must not grow with them. ----

_CHILD = """
import os, sys, resource
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "campaignsite.settings"
django.setup()
from django.core.management import call_command
from staging import services
from tests.staging.conftest import SAMPLE_SOURCE, staged_schema
from django.core.management import call_command
call_command("migrate", verbosity=0, database="default")
call_command("migrate", verbosity=0, database="cloud")
staged_schema(SAMPLE_SOURCE)
call_command("ingest", "dem:sampleTable", sys.argv[1], "--batch-size", "5000")
print("peak", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_rss(tmp_path: Path, records: int, fmt: str) -> int:
    data = tmp_path / f"big-{records}.{fmt}"
    with open(data, "w") as out:
        if fmt == "xml":
            out.write('<sampleTableStg-collection xtkschema="dem:sampleTableStg">\n')
            for i in range(records):
                out.write(f'<sampleTableStg testcol1="value number {i}" testcol2="{"x" * 40}"/>\n')
            out.write("</sampleTableStg-collection>\n")
        else:
            for i in range(records):
                out.write(json.dumps({"testcol1": f"value number {i}", "testcol2": "x" * 40}) + "\n")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / f'local-{records}.sqlite3'}",
           "CLOUD_DATABASE_URL": f"sqlite:///{tmp_path / f'cloud-{records}.sqlite3'}"}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(data)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Ingested {records} record(s)" in done.stdout
    return int(done.stdout.split("peak")[-1])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["xml", "jsonl"])
def test_memory_stays_flat_on_a_large_file(tmp_path, fmt):
    small = _peak_rss(tmp_path, 30_000, fmt)
    large = _peak_rss(tmp_path, 300_000, fmt)
    # Ten times the records: a streaming reader stays within a small margin of the smaller run.
    assert large < small * 1.3, (small, large)
