"""`make bench`: every benchmark in one run, printed as ONE table and written as markdown.

    .venv/bin/python bench/run.py [--quick] [--out bench/results/latest.md]

Each figure is printed beside a baseline measured in the same run on the same machine; the ratio
(product speed ÷ baseline speed, higher is better) is the result, the absolute numbers are the
machine's. SQLite by default, on fresh files under var/bench/; PostgreSQL with BENCH_DATABASE_URL and
BENCH_CLOUD_DATABASE_URL (databases whose name contains "bench": they are created when missing and
EMPTIED at the start). `--quick` runs every path with tiny sizes (the smoke test; no figure means
anything then).
"""

import argparse
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SETTINGS = "bench.benchsite"
FULL = dict(records=100_000, repeat=3, ie_default_records=10_000, clients=8, unitary_seconds=20.0,
            subscriptions=50_000, cloud_records=100_000, sync_rows=200_000,
            rss_sizes=[250_000, 500_000, 1_000_000])
QUICK = dict(records=300, repeat=1, ie_default_records=100, clients=2, unitary_seconds=1.0,
             subscriptions=200, cloud_records=300, sync_rows=300, rss_sizes=[300])


@dataclass(frozen=True)
class Figure:
    name: str
    value: str
    baseline: str
    ratio: float | None  # product speed / baseline speed
    target: str
    met: bool | None  # None: no target for this figure (or not on this database)


# --- Environment ------------------------------------------------------------------------------

def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[-1].split("?", 1)[0]


def _ensure_postgres_database(url: str) -> None:
    """Create the database of `url` when missing; refuse names without "bench" (they get emptied)."""
    import psycopg

    name = _database_name(url)
    if "bench" not in name:
        raise SystemExit(f"{url}: the benchmark empties its databases; use a database whose name contains 'bench'.")
    try:
        psycopg.connect(url.replace("postgres://", "postgresql://", 1)).close()
        return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    admin = url.replace("postgres://", "postgresql://", 1).rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')


def configure(*, out_dir: Path) -> dict:
    """Point this process (and the servers it starts) at the benchmark databases; returns the env."""
    local, cloud = os.environ.get("BENCH_DATABASE_URL"), os.environ.get("BENCH_CLOUD_DATABASE_URL")
    if bool(local) != bool(cloud):
        raise SystemExit("Set both BENCH_DATABASE_URL and BENCH_CLOUD_DATABASE_URL, or neither (SQLite).")
    if local:
        for url in (local, cloud):
            _ensure_postgres_database(url)
    else:
        # Fresh SQLite files for every run, so no earlier run's rows or WAL weigh on this one.
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        local, cloud = f"sqlite:///{out_dir / 'local.sqlite3'}", f"sqlite:///{out_dir / 'cloud.sqlite3'}"
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(DJANGO_SETTINGS_MODULE=SETTINGS, DATABASE_URL=local, CLOUD_DATABASE_URL=cloud)
    return dict(os.environ)


def setup() -> tuple:
    """Empty PostgreSQL databases, migrate, load the built-in schemas and the sample schema.
    Returns (sample schema, superuser, API token, SOAP session token, SOAP security token)."""
    from campaignsite.permissions import SYSTEM
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from bench import ingest_bench
    from staging.services import builtin_schemas_load
    from staging.soap_sessions import soap_session_open

    for alias in ("default", "cloud"):
        connection = connections[alias]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        call_command("migrate", database=alias, run_syncdb=True, verbosity=0)
    call_command("createcachetable", verbosity=0)
    builtin_schemas_load(user=SYSTEM)
    schema, user, token = ingest_bench.prepare()
    _, session_token, security_token = soap_session_open(user=user)
    return schema, user, token, session_token, security_token


def machine() -> dict:
    import sqlite3

    from django.db import connections

    info = {"cpus": str(os.cpu_count()), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform()}
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["ram"] = f"{pages * size / 2**30:.1f} GiB"
    except (ValueError, OSError):
        info["ram"] = "?"
    try:
        info["load"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        info["load"] = "?"
    connection = connections["default"]
    info["database"] = connection.vendor
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            info["postgresql"] = cursor.fetchone()[0]
    return info


# --- Sections -------------------------------------------------------------------------------

def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} rows/s"


def _best(measures: dict, repeat: int) -> dict:
    """Best seconds per label over `repeat` rounds; the labels alternate within a round so that
    noise from other processes on the machine falls on all of them alike."""
    best: dict[str, float] = {}
    for _ in range(repeat):
        for label, measure in measures.items():
            seconds = measure()
            best[label] = min(seconds, best.get(label, seconds))
    return best


def _http_post(server, path: str, body: bytes, headers: dict, ok) -> float:
    started = time.perf_counter()
    status, data = server.post(path, body, headers)
    elapsed = time.perf_counter() - started
    if not ok(status, data):
        raise RuntimeError(f"POST {path} answered {status}: {data[:1000]!r}")
    return elapsed


def batch_ingest(server, ctx, sizes) -> list[Figure]:
    from bench import import_export_bench, ingest_bench, unitary_bench

    n = sizes["records"]
    schema = ctx["schema"]
    soap_body = (
        '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="urn:xtk:session">'
        f"<SOAP-ENV:Body><m:Ingest><m:sessiontoken>{ctx['session_token']}</m:sessiontoken><m:domDoc>"
        + ingest_bench.collection(n) + "</m:domDoc></m:Ingest></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    ).encode()
    soap_headers = unitary_bench.soap_headers(ctx["security_token"])
    import json

    rest_body = json.dumps([ingest_bench.values(i) for i in range(n)]).encode()
    rest_headers = {"Content-Type": "application/json", "Authorization": f"Token {ctx['token']}"}
    rest_path = "/api/v1/staging/dem:sampleTable/ingest/"
    # Every gunicorn worker imports the URLs and connects on its first request: not part of a call.
    unitary_bench.warm_up(server, unitary_bench.SOAP_PATH, unitary_bench.ingest_envelope(ctx["session_token"]),
                          soap_headers)

    def cleared(measure):
        def run():
            ingest_bench._clear(schema)
            return measure()
        return run

    best = _best({
        "raw": cleared(lambda: ingest_bench.raw_executemany(schema, n)),
        "soap": cleared(lambda: _http_post(server, unitary_bench.SOAP_PATH, soap_body, soap_headers,
                                           unitary_bench.ingest_ok)),
        "rest": cleared(lambda: _http_post(server, rest_path, rest_body, rest_headers,
                                           lambda status, data: status == 201)),
    }, sizes["repeat"])
    ingest_bench._clear(schema)
    ie_tuned = import_export_bench.import_rows(n)
    m = sizes["ie_default_records"]
    ie_default = import_export_bench.import_rows(m, tuned=False)
    raw, soap, rest = n / best["raw"], n / best["soap"], n / best["rest"]
    tuned, default = n / ie_tuned, m / ie_default
    kilo = f"{n // 1000}k" if n >= 1000 else str(n)
    return [
        Figure(f"Batch ingest: SOAP collection, {kilo} records in one call, over HTTP", _rate(n, best["soap"]),
               f"raw executemany {_rate(n, best['raw'])}", soap / raw, "≥ 0.5×", soap / raw >= 0.5),
        Figure(f"Batch ingest: REST JSON, {kilo} records in one call, over HTTP", _rate(n, best["rest"]),
               f"raw executemany {_rate(n, best['raw'])}", rest / raw, "≥ 0.5×", rest / raw >= 0.5),
        Figure("Batch ingest: SOAP collection vs django-import-export (bulk, tuned)", _rate(n, best["soap"]),
               f"import-export {_rate(n, ie_tuned)}", soap / tuned, "≥ 10×", soap / tuned >= 10),
        Figure("Batch ingest: REST JSON vs django-import-export (bulk, tuned)", _rate(n, best["rest"]),
               f"import-export {_rate(n, ie_tuned)}", rest / tuned, "≥ 10×", rest / tuned >= 10),
        Figure(f"Batch ingest: SOAP collection vs django-import-export (defaults, {m:,} rows)",
               _rate(n, best["soap"]), f"import-export {_rate(m, ie_default)}", soap / default, "≥ 10×",
               soap / default >= 10),
    ]


def unitary_ingest(server, ctx, sizes) -> list[Figure]:
    from bench import ingest_bench, unitary_bench
    from bench.urls import TRIVIAL_PATH

    clients, seconds = sizes["clients"], sizes["unitary_seconds"]
    ingest, trivial = unitary_bench.run(server, session_token=ctx["session_token"],
                                        security_token=ctx["security_token"], trivial_path=TRIVIAL_PATH,
                                        clients=clients, seconds=seconds)
    ingest_bench._clear(ctx["schema"])
    for name, result in (("Ingest", ingest), ("trivial view", trivial)):
        if result.errors or not result.calls:
            raise RuntimeError(f"unitary {name}: {result.errors} failed calls of {result.calls + result.errors}; "
                               f"first: {result.first_error}")
    ratio = ingest.rate / trivial.rate
    p99 = ingest.percentile(0.99) * 1000
    return [
        Figure(f"Unitary Ingest: SOAP, 1 record/call, {clients} clients, {seconds:.0f} s",
               f"{ingest.rate:,.0f} calls/s", f"trivial view {trivial.rate:,.0f} calls/s", ratio, "≥ 0.5×",
               ratio >= 0.5),
        Figure("Unitary Ingest: latency p50 / p99",
               f"{ingest.percentile(0.5) * 1000:.1f} / {p99:.1f} ms",
               f"trivial view {trivial.percentile(0.5) * 1000:.1f} / {trivial.percentile(0.99) * 1000:.1f} ms",
               None, "p99 ≤ 20 ms", p99 <= 20),
    ]


def ingest_to_cloud(ctx, sizes, vendor: str) -> list[Figure]:
    from bench import ingest_to_cloud_bench

    n = sizes["cloud_records"]
    best = _best({"raw": lambda: ingest_to_cloud_bench.raw_twice(ctx["schema"], n),
                  "path": lambda: sum(ingest_to_cloud_bench.ingest_then_sync(ctx["schema"], ctx["user"], n))},
                 max(1, sizes["repeat"] - 1))
    ingest_s, sync_s = ingest_to_cloud_bench.ingest_then_sync(ctx["schema"], ctx["user"], n)
    total = min(best["path"], ingest_s + sync_s)
    on_sqlite = vendor == "sqlite"
    kilo = f"{n // 1000}k" if n >= 1000 else str(n)
    return [Figure(f"Ingest → cloud: {kilo} records ingested, then sync now (last run: ingest {ingest_s:.2f} s "
                   f"+ sync {sync_s:.2f} s)", f"{total:.2f} s",
                   f"raw executemany into staging + cloud {best['raw']:.2f} s", best["raw"] / total,
                   "≤ 2 s on SQLite" if on_sqlite else "(≤ 2 s is for SQLite)", total <= 2 if on_sqlite else None)]


def subscriptions(ctx, sizes) -> list[Figure]:
    from bench import subscriptions_bench

    n = sizes["subscriptions"]
    best = _best({"raw": lambda: subscriptions_bench.raw_writes(ctx["user"], n),
                  "process": lambda: subscriptions_bench.process(ctx["user"], n)}, max(1, sizes["repeat"] - 1))
    kilo = f"{n // 1000}k" if n >= 1000 else str(n)
    return [Figure(f"Subscriptions: {kilo} opt-in requests processed", _rate(n, best["process"]),
                   f"raw executemany of the same writes {_rate(n, best['raw'])}", best["raw"] / best["process"],
                   "(none set)", None)]


def sync(env: dict, sizes, quick: bool) -> list[Figure]:
    """The figures of bench/sync_bench.py (`run` and `peak_rss`, its author's functions), when present."""
    if not (ROOT / "bench" / "sync_bench.py").exists():
        return [Figure("Sync: bench/sync_bench.py not present in this checkout", "—", "—", None, "—", None)]
    from bench import sync_bench

    n = sizes["sync_rows"]
    result = sync_bench.run(n)
    baseline = "INSERT … SELECT over ATTACH" if result["vendor"] == "sqlite" else "COPY + upsert"
    ratio = result["raw"] / result["sync"]
    kilo = f"{n // 1000}k" if n >= 1000 else str(n)
    figures = [Figure(f"Sync: {kilo} staged rows (50 % inserts, 30 % partial updates, 20 % deletes)",
                      _rate(n, result["sync"]), f"raw {baseline} {_rate(n, result['raw'])}", ratio, "≥ 0.5×",
                      ratio >= 0.5)]
    rss = sync_bench.peak_rss(sizes["rss_sizes"])
    peaks = " / ".join(f"{r['peak_kb'] / 1024:.0f}" for r in rss)
    starts = " / ".join(f"{r['startup_kb'] / 1024:.0f}" for r in rss)
    rows = " / ".join(f"{r['rows'] // 1000}k" if r["rows"] >= 1000 else str(r["rows"]) for r in rss)
    figures.append(Figure(f"Sync: peak RSS of a fresh process syncing {rows} rows", f"{peaks} MB",
                          f"after start-up {starts} MB", None, "≤ 150 MB at 1M, flat in N",
                          rss[-1]["peak_kb"] / 1024 <= 150 if not quick else None))
    return figures


SECTIONS = {"batch": batch_ingest, "unitary": unitary_ingest, "sync": sync, "cloud": ingest_to_cloud,
            "subscriptions": subscriptions}


# --- Output ---------------------------------------------------------------------------------

def table(figures: list[Figure]) -> str:
    lines = ["| Figure | Measured | Baseline (same run) | Ratio | Target | Met? |",
             "|---|---:|---:|---:|---|---|"]
    for f in figures:
        ratio = "—" if f.ratio is None else f"{f.ratio:.2f}×"
        met = "—" if f.met is None else ("yes" if f.met else "**no**")
        lines.append(f"| {f.name} | {f.value} | {f.baseline} | {ratio} | {f.target} | {met} |")
    return "\n".join(lines)


def report(figures: list[Figure], info: dict, *, seconds: float, quick: bool) -> str:
    database = info["database"] + (f" {info['postgresql']}" if "postgresql" in info else f" {info['sqlite']}")
    head = [
        f"# Benchmark run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC{' (QUICK: sizes too small to mean anything)' if quick else ''}",
        "",
        f"Database: {database}. Machine: {info['cpus']} CPUs, {info['ram']} RAM, load average at the end "
        f"{info['load']}; Python {info['python']}, SQLite {info['sqlite']}; {info['platform']}. "
        f"Whole run: {seconds:.0f} s.",
        "",
        "Ratio = product speed ÷ baseline speed, both measured in this run (higher is better).",
        "",
        "",
    ]
    return "\n".join(head) + table(figures) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks every path runs, measures nothing")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.md")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "var" / "bench",
                        help="SQLite files and server logs (emptied first)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: all of {', '.join(SECTIONS)})")
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if only - set(SECTIONS):
        parser.error(f"unknown section(s) {', '.join(sorted(only - set(SECTIONS)))}; known: {', '.join(SECTIONS)}")
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    env = configure(out_dir=args.work_dir)
    schema, user, token, session_token, security_token = setup()
    ctx = dict(schema=schema, user=user, token=token, session_token=session_token, security_token=security_token)
    from bench import unitary_bench
    from bench.urls import TRIVIAL_PATH
    from django.db import connections

    vendor = connections["default"].vendor
    figures: list[Figure] = []
    print(f"Benchmarks on {vendor} ({'quick' if args.quick else 'full sizes'}); server log in {args.work_dir}",
          file=sys.stderr, flush=True)
    if only & {"batch", "unitary"}:
        with unitary_bench.served(env=env, log_path=args.work_dir / "server.log", ready_path=TRIVIAL_PATH) as server:
            for name in ("batch", "unitary"):
                if name in only:
                    print(f"  {name} ...", file=sys.stderr, flush=True)
                    figures += SECTIONS[name](server, ctx, sizes)
        connections.close_all()
    if "sync" in only:
        print("  sync ...", file=sys.stderr, flush=True)
        figures += sync(env, sizes, args.quick)
    if "cloud" in only:
        print("  ingest -> cloud ...", file=sys.stderr, flush=True)
        figures += ingest_to_cloud(ctx, sizes, vendor)
    if "subscriptions" in only:
        print("  subscriptions ...", file=sys.stderr, flush=True)
        figures += subscriptions(ctx, sizes)
    text = report(figures, machine(), seconds=time.perf_counter() - started, quick=args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    print(f"(written to {args.out})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
