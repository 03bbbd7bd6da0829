"""Sync benchmark: rows/s of `staging.sync.staging_sync` over a mixed backlog, beside a raw
copy of the same rows measured in the same run, and the peak memory of syncing growing backlogs.

    .venv/bin/python bench/sync_bench.py [--rows 200000] [--rss-sizes 250000,500000,1000000] [--batch-size N]

Env: SYNC_BENCH_ROWS, SYNC_BENCH_RSS_SIZES (comma-separated; empty skips the memory part). Without
BENCH_DATABASE_URL/BENCH_CLOUD_DATABASE_URL it uses its own SQLite files var/bench_sync_*.sqlite3.

The backlog (staged with one executemany, not through the services, on a cloud table seeded with N/2
records): 50 % inserts of new keys, 30 % partial updates of cloud records (one column), 20 % deletes.
Raw baseline, same rows, same machine, same run:
- SQLite: the cloud file ATTACHed to the local one, one `INSERT INTO cloud.T SELECT ... FROM staging
  WHERE true ON CONFLICT DO UPDATE` (sqlite3 module, one transaction);
- PostgreSQL: `COPY` out of the local database into a temporary table of the cloud database, then one
  `INSERT ... SELECT ... ON CONFLICT DO UPDATE`.
The baseline neither reads operations nor records outcomes: it is the ceiling. Peak RSS: each size is
synced by a fresh process (this script with --rss-child), which reports its own high-water mark.
"""

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ingest_bench import SCHEMA  # noqa: E402  (the same sample table as the ingest benchmark)

SCHEMA_ID = "dem:sampleTable"
DEFAULT_ROWS = 200_000
DEFAULT_RSS_SIZES = "250000,500000,1000000"


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaignsite.settings")
    if not os.environ.get("SYNC_BENCH_CHILD"):  # a child uses what its parent put in DATABASE_URL
        var = ROOT / "var"
        os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{var / 'bench_sync_local.sqlite3'}")
        os.environ["CLOUD_DATABASE_URL"] = os.environ.get("BENCH_CLOUD_DATABASE_URL",
                                                          f"sqlite:///{var / 'bench_sync_cloud.sqlite3'}")
    import django
    from django.core.management import call_command

    django.setup()
    if not os.environ.get("SYNC_BENCH_CHILD"):
        for alias in ("default", "cloud"):
            call_command("migrate", database=alias, verbosity=0)


def prepare():
    """The staged sample schema, created once, structure up to date."""
    from campaignsite.permissions import SYSTEM
    from staging import services
    from staging.models import Schema

    schema = Schema.objects.filter(namespace="dem", name="sampleTable").first()
    if schema is None:
        schema = services.schema_create(user=SYSTEM, source=SCHEMA)
    if not schema.auto_stg:
        schema = services.schema_set_auto_stg(user=SYSTEM, schema=schema, enabled=True)
    services.structure_update(user=SYSTEM, schema=schema)
    return schema


class Names:
    """Quoted table and column names on each database (PostgreSQL lower-cases them)."""

    def __init__(self, schema):
        from django.db import connections

        from staging import ddl

        self.local_vendor = connections[ddl.LOCAL].vendor
        self.cloud_vendor = connections[ddl.CLOUD].vendor
        description = schema.description
        self.lq = lambda name: ddl.quote(name, self.local_vendor)  # noqa: E731
        self.cq = lambda name: ddl.quote(name, self.cloud_vendor)  # noqa: E731
        self.staging = description.staging_table
        self.cloud = description.sql_table
        self.columns = [a.sql_name for a in description.attributes]  # id, testcol1, testcol2


def workload(n: int):
    """(cloud seed rows, staged rows, cloud row count after the sync) for a backlog of n rows."""
    staged, seed = [], []
    for i in range(n):
        # Operations interleaved so every batch mixes them, as real traffic does.
        slot = i % 10
        if slot < 5:
            staged.append((f"n{i:08d}", f"new one {i}", f"new two {i}", 0, "insert", "testcol1,testcol2", "id"))
            continue
        seed.append((f"c{i:08d}", f"cloud one {i}", f"cloud two {i}"))
        if slot < 8:
            staged.append((f"c{i:08d}", None, f"changed two {i}", 0, "insertOrUpdate", "testcol2", "id"))
        else:
            staged.append((f"c{i:08d}", None, None, 1, "delete", "", "id"))
    deletes = sum(1 for row in staged if row[4] == "delete")
    return seed, staged, n - deletes


def load(schema, n: int) -> int:
    """Empty both tables, seed the cloud, stage the backlog (one executemany each); the expected cloud count."""
    from django.db import connections, transaction

    from staging import ddl

    names = Names(schema)
    seed, staged, expected = workload(n)
    cloud_columns = [names.cq(c) for c in names.columns]
    with transaction.atomic(using=ddl.CLOUD), connections[ddl.CLOUD].cursor() as cursor:
        cursor.execute(f"DELETE FROM {names.cq(names.cloud)}")
        _insert(cursor, names.cq(names.cloud), cloud_columns, seed)
    staged_columns = [names.lq(c) for c in names.columns + [ddl.COL_DELETE, ddl.COL_OPERATION, ddl.COL_COLUMNS,
                                                              ddl.COL_KEY]]
    with transaction.atomic(using=ddl.LOCAL), connections[ddl.LOCAL].cursor() as cursor:
        cursor.execute(f"DELETE FROM {names.lq(names.staging)}")
        _insert(cursor, names.lq(names.staging), staged_columns, staged)
    _settle()
    return expected


def _insert(cursor, table: str, columns: list[str], rows: list[tuple]) -> None:
    """Load rows (setup, untimed): executemany on SQLite, COPY on PostgreSQL, where executemany would
    spend minutes on the 1M-row backlog of the memory part."""
    if cursor.db.vendor == "postgresql":
        with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})", rows)


def _settle() -> None:
    """Write back SQLite's WAL (else the next timed commit pays the checkpoint) and collect garbage."""
    from django.db import connections

    for alias in ("default", "cloud"):
        connection = connections[alias]
        if connection.vendor == "sqlite" and not connection.in_atomic_block:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        elif connection.vendor == "postgresql" and not connection.in_atomic_block:
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
    gc.collect()


def cloud_count(schema) -> int:
    from django.db import connections

    names = Names(schema)
    with connections["cloud"].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {names.cq(names.cloud)}")
        return cursor.fetchone()[0]


def raw_sqlite(schema) -> float:
    """Seconds for one INSERT ... SELECT ... ON CONFLICT DO UPDATE from staging into the ATTACHed cloud file."""
    import sqlite3

    from django.db import connections

    names = Names(schema)
    q = names.cq
    columns = ", ".join(q(c) for c in names.columns)
    updates = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in names.columns[1:])
    connection = sqlite3.connect(connections["default"].settings_dict["NAME"], timeout=30, isolation_level=None)
    try:
        connection.execute("ATTACH DATABASE ? AS cloud", (str(connections["cloud"].settings_dict["NAME"]),))
        started = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(f"INSERT INTO cloud.{q(names.cloud)} ({columns}) SELECT {columns} FROM "
                           f"{q(names.staging)} WHERE true ON CONFLICT ({q(names.columns[0])}) DO UPDATE SET {updates}")
        connection.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        connection.close()


def raw_postgresql(schema) -> float:
    """Seconds to COPY the staged rows out of the local database into a temporary cloud table, then upsert."""
    from django.db import connections, transaction

    names = Names(schema)
    q = names.cq
    columns = ", ".join(q(c) for c in names.columns)
    updates = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in names.columns[1:])
    started = time.perf_counter()
    with transaction.atomic(using="cloud"), connections["cloud"].cursor() as cloud, \
            connections["default"].cursor() as local:
        cloud.execute(f"CREATE TEMPORARY TABLE bench_copy (LIKE {q(names.cloud)}) ON COMMIT DROP")
        with local.cursor.copy(f"COPY (SELECT {columns} FROM {names.lq(names.staging)}) TO STDOUT") as out, \
                cloud.cursor.copy(f"COPY bench_copy ({columns}) FROM STDIN") as into:
            for block in out:
                into.write(block)
        cloud.execute(f"INSERT INTO {q(names.cloud)} ({columns}) SELECT {columns} FROM bench_copy "
                      f"ON CONFLICT ({q(names.columns[0])}) DO UPDATE SET {updates}")
    return time.perf_counter() - started


def sync_seconds(schema, n: int, batch_size: int | None) -> float:
    from campaignsite.permissions import SYSTEM
    from staging import sync
    from staging.models import SyncRun

    started = time.perf_counter()
    kwargs = {"batch_size": batch_size} if batch_size else {}
    run = sync.staging_sync(schema=schema, trigger=SyncRun.Trigger.COMMAND, user=SYSTEM, **kwargs)
    elapsed = time.perf_counter() - started
    assert run.sent == n and run.failed == 0, (run.status, run.sent, run.failed, run.error)
    return elapsed


def run(n: int, *, batch_size: int | None = None) -> dict:
    """Raw baseline then sync of the same n-row backlog; {'raw': s, 'sync': s, 'vendor': ...}. Django must be set up."""
    from django.db import connections

    schema = prepare()
    vendor = connections["cloud"].vendor
    load(schema, n)
    raw = raw_sqlite(schema) if vendor == "sqlite" else raw_postgresql(schema)
    expected = load(schema, n)  # the same starting state for the sync
    synced = sync_seconds(schema, n, batch_size)
    assert cloud_count(schema) == expected, (cloud_count(schema), expected)
    return {"rows": n, "raw": raw, "sync": synced, "vendor": vendor}


def peak_rss(sizes: list[int], *, batch_size: int | None = None) -> list[dict]:
    """For each size: stage the backlog here, sync it in a fresh process; its RSS after start-up and its peak."""
    from campaignsite.db import database_url

    schema = prepare()
    results = []
    for n in sizes:
        load(schema, n)
        env = {**os.environ, "SYNC_BENCH_CHILD": "1", "DATABASE_URL": database_url("default"),
               "CLOUD_DATABASE_URL": database_url("cloud")}
        command = [sys.executable, str(Path(__file__).resolve()), "--rss-child"]
        if batch_size:
            command += ["--batch-size", str(batch_size)]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
        if done.returncode:
            raise RuntimeError(f"the sync child failed:\n{done.stdout}\n{done.stderr}")
        child = json.loads(done.stdout.strip().splitlines()[-1])
        assert child["sent"] == n, child
        results.append({"rows": n, **child})
    return results


def _high_water_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_child(batch_size: int | None) -> None:
    """In the fresh process: sync every pending row, print {'sent', 'startup_kb', 'peak_kb', 'seconds'}."""
    from campaignsite.permissions import SYSTEM
    setup_django()
    from staging import sync
    from staging.models import SyncRun
    from staging.services import schema_get

    schema = schema_get(schema_id=SCHEMA_ID)
    startup = _high_water_kb()
    started = time.perf_counter()
    kwargs = {"batch_size": batch_size} if batch_size else {}
    result = sync.staging_sync(schema=schema, trigger=SyncRun.Trigger.COMMAND, user=SYSTEM, **kwargs)
    print(json.dumps({"sent": result.sent, "startup_kb": startup, "peak_kb": _high_water_kb(),
                      "seconds": time.perf_counter() - started}))


def report(result: dict, rss: list[dict]) -> str:
    n, raw, synced = result["rows"], result["raw"], result["sync"]
    baseline = "INSERT ... SELECT over ATTACH" if result["vendor"] == "sqlite" else "COPY + upsert"
    lines = [f"Sync of {n:,} staged rows of {SCHEMA_ID} on {result['vendor']} "
             "(50 % inserts, 30 % partial updates, 20 % deletes)", "",
             f"{'path':<34}{'seconds':>9}{'rows/s':>12}{'vs raw':>9}",
             f"{'raw ' + baseline:<34}{raw:>9.2f}{n / raw:>12,.0f}{1:>8.2f}x",
             f"{'staging_sync':<34}{synced:>9.2f}{n / synced:>12,.0f}{raw / synced:>8.2f}x"]
    if rss:
        lines += ["", "Peak RSS of a fresh process syncing N rows", "",
                  f"{'rows':>10}{'after start-up MB':>20}{'peak MB':>10}{'seconds':>10}"]
        lines += [f"{r['rows']:>10,}{r['startup_kb'] / 1024:>20.1f}{r['peak_kb'] / 1024:>10.1f}{r['seconds']:>10.1f}"
                  for r in rss]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("SYNC_BENCH_ROWS", DEFAULT_ROWS)))
    parser.add_argument("--rss-sizes", default=os.environ.get("SYNC_BENCH_RSS_SIZES", DEFAULT_RSS_SIZES),
                        help="Comma-separated backlog sizes for the peak-RSS part; empty skips it.")
    parser.add_argument("--batch-size", type=int, default=None, help="staging_sync's batch size (its default).")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.batch_size)
        return
    setup_django()
    result = run(args.rows, batch_size=args.batch_size)
    sizes = [int(s) for s in args.rss_sizes.split(",") if s.strip()]
    print(report(result, peak_rss(sizes, batch_size=args.batch_size) if sizes else []))


if __name__ == "__main__":
    main()
