"""Batch ingest benchmark: rows/s of a 100k-record call through each way in, beside a raw
`executemany` into the same staging table measured in the same run. The ratio is the result.

    .venv/bin/python bench/ingest_bench.py [--records 100000] [--repeat 3] [--no-http]

Paths measured, each ingesting N new records into dem:sampleTableStg in one call:
- raw executemany: pre-built rows, one INSERT ... executemany in one transaction (the ceiling);
- SOAP collection, service: parse the XML collection (staging.xml) + records_from_xml + records_ingest;
- SOAP collection, router: the whole Django stack (test client) through /nl/jsp/soaprouter.jsp;
- REST JSON: the whole Django stack through POST /api/v1/staging/dem:sampleTable/ingest/.
Without DATABASE_URL/CLOUD_DATABASE_URL it uses its own SQLite files var/bench_*.sqlite3.
"""

import argparse
import gc
import json
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = """<srcSchema name="sampleTable" namespace="dem" label="Sample Table">
  <element autopk="true" autouuid="true" autoStg="true" dataSource="nms:extAccount:ffda" name="sampleTable">
    <attribute label="Test Col 1" length="255" name="testcol1" type="string"/>
    <attribute label="Test Col 2" length="255" name="testcol2" type="string"/>
  </element>
</srcSchema>"""
STAGING_ID = "dem:sampleTableStg"


def values(i: int) -> dict:
    return {"testcol1": f"Test Value {i}", "testcol2": f"bench row {i} of the ingest benchmark"}


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaignsite.settings")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench_local.sqlite3'}")
    os.environ.setdefault("CLOUD_DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench_cloud.sqlite3'}")
    import django
    from django.core.management import call_command

    django.setup()
    for alias in ("default", "cloud"):
        call_command("migrate", database=alias, verbosity=0)


def prepare():
    """The staged sample schema (created once) and a superuser with an API token."""
    from campaignsite.permissions import SYSTEM
    from django.contrib.auth.models import User

    from apitokens.services import api_token_create
    from staging import services
    from staging.models import Schema

    schema = Schema.objects.filter(namespace="dem", name="sampleTable").first()
    if schema is None:
        schema = services.schema_create(user=SYSTEM, source=SCHEMA)
    services.structure_update(user=SYSTEM, schema=schema)
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench", password=None)
    return schema, user, api_token_create(user=user, name="bench")[1]


def _clear(schema) -> None:
    from django.db import connections, transaction

    from staging import ddl

    connection = connections[ddl.LOCAL]
    with transaction.atomic(using=ddl.LOCAL), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {ddl.quote(schema.description.staging_table, connection.vendor)}")
    if connection.in_atomic_block:  # inside a test's transaction: neither statement may run
        return
    with connection.cursor() as cursor:
        # Each path starts from the same state: the delete's WAL pages written back to the file
        # (else the next commit pays the checkpoint), and the previous path's garbage collected.
        if connection.vendor == ddl.SQLITE:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            cursor.execute(f"VACUUM {ddl.quote(schema.description.staging_table, connection.vendor)}")
    gc.collect()


def raw_executemany(schema, n: int) -> float:
    """Seconds to insert n pre-built rows with one executemany in one transaction."""
    from django.db import connections, transaction
    from django.utils import timezone

    from staging import ddl

    connection = connections[ddl.LOCAL]
    q = lambda name: ddl.quote(name, connection.vendor)  # noqa: E731
    description = schema.description
    columns = [a.sql_name for a in description.attributes] + [ddl.COL_LAST_MODIFIED, ddl.COL_OPERATION,
                                                              ddl.COL_COLUMNS]
    now = timezone.now()
    now = now.replace(tzinfo=None).isoformat(" ") if connection.vendor == ddl.SQLITE else now
    rows = [(str(uuid.uuid4()), *values(i).values(), now, "insert", "testcol1,testcol2") for i in range(n)]
    sql = (f"INSERT INTO {q(description.staging_table)} ({', '.join(q(c) for c in columns)}) "
           f"VALUES ({', '.join(['%s'] * len(columns))})")
    started = time.perf_counter()
    with transaction.atomic(using=ddl.LOCAL), connection.cursor() as cursor:
        cursor.executemany(sql, rows)
    return time.perf_counter() - started


def collection(n: int) -> str:
    parts = [f'<sampleTableStg-collection xtkschema="{STAGING_ID}">']
    parts += [f'<sampleTableStg testcol1="{v["testcol1"]}" testcol2="{v["testcol2"]}"/>'
              for v in map(values, range(n))]
    parts.append("</sampleTableStg-collection>")
    return "".join(parts)


def soap_service(user, n: int) -> float:
    """Seconds for the SOAP handler's work without HTTP: parse, read records, ingest."""
    from django.conf import settings

    from staging import services
    from staging.records import records_from_xml
    from staging.xml import parse_xml

    document = collection(n).encode()
    started = time.perf_counter()
    schema_id, records = records_from_xml(parse_xml(document, max_bytes=settings.INGEST_MAX_BYTES))
    result = services.records_ingest(schema_id=schema_id, records=records, user=user)
    elapsed = time.perf_counter() - started
    assert len(result.uuids) == n
    return elapsed


def soap_router(token: str, n: int) -> float:
    """Seconds for an Ingest call through the SOAP router (whole Django stack, no socket)."""
    from django.test import Client

    envelope = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:xtk:session">'
        "<soapenv:Header/><soapenv:Body><urn:Ingest><urn:sessiontoken></urn:sessiontoken><urn:domDoc>"
        + collection(n) + "</urn:domDoc></urn:Ingest></soapenv:Body></soapenv:Envelope>"
    ).encode()
    client = Client(HTTP_HOST="127.0.0.1")
    started = time.perf_counter()
    response = client.post("/nl/jsp/soaprouter.jsp", data=envelope, content_type="text/xml; charset=utf-8",
                           HTTP_SOAPACTION="xtk:session#Ingest", HTTP_AUTHORIZATION=f"Bearer {token}")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.content[:2000]
    return elapsed


def rest_json(token: str, n: int) -> float:
    """Seconds for POST .../ingest/ with a JSON array (whole Django stack, no socket)."""
    from django.test import Client

    body = json.dumps([values(i) for i in range(n)])
    client = Client(HTTP_HOST="127.0.0.1")
    started = time.perf_counter()
    response = client.post("/api/v1/staging/dem:sampleTable/ingest/", data=body, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Token {token}")
    elapsed = time.perf_counter() - started
    assert response.status_code == 201, response.content[:2000]
    return elapsed


def run(n: int, *, http: bool = True, repeat: int = 1) -> list[tuple[str, float]]:
    """[(path, best seconds of `repeat` runs)] for n records each, the raw baseline first. Django
    must be set up. Paths alternate within each round, so machine noise hits them alike."""
    schema, user, token = prepare()
    measures = [("raw executemany", lambda: raw_executemany(schema, n)),
                ("SOAP collection (service)", lambda: soap_service(user, n))]
    if http:
        measures += [("SOAP collection (router)", lambda: soap_router(token, n)),
                     ("REST JSON", lambda: rest_json(token, n))]
    best: dict[str, float] = {}
    for _ in range(repeat):
        for label, measure in measures:
            _clear(schema)
            seconds = measure()
            best[label] = min(seconds, best.get(label, seconds))
    _clear(schema)
    return list(best.items())


def report(n: int, results: list[tuple[str, float]], vendor: str) -> str:
    baseline = n / results[0][1]
    lines = [f"Batch ingest of {n} records into {STAGING_ID} on {vendor}", "",
             f"{'path':<28}{'seconds':>9}{'rows/s':>12}{'vs raw':>9}"]
    for label, seconds in results:
        rate = n / seconds
        lines.append(f"{label:<28}{seconds:>9.2f}{rate:>12,.0f}{rate / baseline:>8.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="Rounds; the best time of each path counts.")
    parser.add_argument("--no-http", action="store_true", help="Skip the SOAP router and REST paths.")
    args = parser.parse_args()
    setup_django()
    from django.db import connections

    results = run(args.records, http=not args.no_http, repeat=args.repeat)
    print(report(args.records, results, connections["default"].vendor))


if __name__ == "__main__":
    main()
