"""Replicate staged rows into the cloud tables (Campaign's "Replicate Staging data").

How one schema is synchronized (docs/sync.md has the full story and the tests behind each promise):

1. Take the schema's lease (`lease_acquire`): one sync per schema at a time, across processes and
   machines. A lease left by a crashed process on this host is taken over at once; elsewhere it
   expires after LEASE_SECONDS.
2. Recover: outcomes that a crashed run committed to the cloud but never recorded in staging
   (`SyncLedger`) are recorded now, so those rows are not applied twice.
3. Read pending rows in ingestion order (iStgSeq), a batch at a time, into a temporary table of the
   cloud connection, by the cheapest route the two databases allow (ATTACH, COPY, or rows; see
   `_route`). A batch holds one reconciliation key shape and each key value once; a repeat ends the
   batch so order is kept.
4. Apply the batch in ONE cloud transaction with set-based SQL over that table: mark which keys
   exist, delete, partial update (only the columns the caller supplied), insert; then write the
   batch's outcomes to the ledger in the same transaction. Outcomes, counts and the ledger JSON are
   computed by SQL: no Python object per row.
5. Record outcomes in staging with one set-based UPDATE and a version check: a row re-ingested
   meanwhile keeps its new values and stays pending (an insert that reached the cloud meanwhile
   becomes insertOrUpdate, so it is not failed as its own duplicate). Then drop the ledger entry.

When the cloud refuses a batch because of some rows (e.g. a NOT NULL column left empty), the next
attempt takes half as many rows until the guilty row stands alone and is marked failed; the size
doubles back after each success. Errors that are not about rows (cloud unreachable, structure out of
date) stop the run and leave rows pending.
"""

import json
import logging
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, connections, reset_queries, transaction
from django.utils import timezone

from campaignsite.db import retry_on_deadlock
from campaignsite.errors import Conflict, InvalidInput, Problem
from campaignsite.permissions import permission_require
from staging import ddl
from staging.ddl import quote
from staging.models import Schema, StructureState, SyncLease, SyncLedger, SyncRun
from staging.links import resolve_links
from staging.srcschema import XML_DATA_ATTR, SchemaDescription
from staging.xmldata import merge_xml_data

logger = logging.getLogger(__name__)

BATCH_SIZE = 5000
LEASE_SECONDS = 300

OP_INSERT = "insert"
OP_INSERT_OR_UPDATE = "insertOrUpdate"
OP_UPDATE = "update"
OP_DELETE = "delete"
OP_UNRESOLVED = "unresolved"  # in the batch table only: a link set by key whose target is missing


# Staged schemas whose rows are requests consumed by their own processor instead of being copied
# to the cloud table: nms:subscriptionRcp is the opt-in/opt-out request log (subscriptions app).
PROCESSED_ELSEWHERE = {"nms:subscriptionRcp": "subscriptions (manage.py process_subscriptions)"}
# The lease each such processor holds while it runs (its runs are SyncRuns of that schema too).
PROCESSOR_LEASES = {"nms:subscriptionRcp": "process:nms:subscriptionRcp"}


class SyncRefused(Conflict):
    code = "CST-409300"


# --- Lease ----------------------------------------------------------------------------------

def _holder_is_dead(holder: str) -> bool:
    """True when `holder` names a process of this host that no longer runs."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def run_holder(run: SyncRun) -> str:
    """The lease holder of a run of this process: "host:pid:run_pk"."""
    return f"{socket.gethostname()}:{os.getpid()}:{run.pk}"


def _run_pk_of(holder: str) -> int | None:
    last = holder.rsplit(":", 2)[-1] if holder.count(":") >= 2 else ""
    return int(last) if last.isdigit() else None


# Recorded on a run whose process died (SIGKILL, lost machine) before it could record its own end.
WORKER_LOST = ("worker lost: the process running this synchronization stopped before it finished; "
               "rows it had not recorded stay pending and the next run completes them")


def _close_lost(run_pks) -> int:
    """Mark these runs failed (worker lost) if they are still `running`; a conditional UPDATE, so a run
    that recorded its own end meanwhile keeps it."""
    return SyncRun.objects.filter(pk__in=run_pks, status=SyncRun.Status.RUNNING).update(
        status=SyncRun.Status.FAILED, error=WORKER_LOST, finished_at=timezone.now())


def lease_acquire(*, name: str, holder: str, seconds: int = LEASE_SECONDS) -> bool:
    """Take the lease `name` for `holder`; False if someone else holds a live one.

    A conditional UPDATE whose row count is checked: atomic on PostgreSQL and on SQLite alike, so it
    works where SELECT ... FOR UPDATE does not (SQLite). Taking over an expired or dead holder's lease
    closes that holder's run (failed, `WORKER_LOST`).
    """
    now = timezone.now()
    SyncLease.objects.get_or_create(name=name, defaults={"holder": "", "expires_at": now})
    leases = SyncLease.objects.filter(name=name)
    expires = now + timedelta(seconds=seconds)
    previous = leases.values_list("holder", flat=True).first() or ""
    if leases.filter(expires_at__lte=now).update(holder=holder, expires_at=expires):
        _close_previous(previous, holder)
        return True
    if leases.filter(holder=holder).update(expires_at=expires):
        return True
    current = leases.values_list("holder", flat=True).first()
    if current and _holder_is_dead(current):
        if leases.filter(holder=current).update(holder=holder, expires_at=expires):
            _close_previous(current, holder)
            return True
    return False


def _close_previous(previous: str, holder: str) -> None:
    # A released lease has no holder; only a holder that never released it (crashed) left a run open.
    run_pk = _run_pk_of(previous) if previous and previous != holder else None
    if run_pk is not None:
        _close_lost([run_pk])


def lease_release(*, name: str, holder: str) -> None:
    SyncLease.objects.filter(name=name, holder=holder).update(holder="", expires_at=timezone.now())


def lease_name(schema_id: str) -> str:
    """The lease a run of `schema_id` holds: the subscription processor's for its request log, else the sync's."""
    return PROCESSOR_LEASES.get(schema_id, f"sync:{schema_id}")


LOST_GRACE_SECONDS = 60  # a run is created a moment before it takes its lease: not lost in that moment


def sync_runs_close_lost() -> int:
    """Mark failed (`WORKER_LOST`) every run still `running` whose process is gone; returns how many.

    A run is gone when its lease names it but the lease expired or its process is dead on this host,
    or when the lease no longer names it (taken over or released) well after the run started. Cheap:
    the running runs (a handful) and their leases. The dashboard, staging_status and the scheduled
    sync call it, so a killed worker's run does not stay `running` for ever.
    """
    now = timezone.now()
    running = list(SyncRun.objects.filter(status=SyncRun.Status.RUNNING).values_list("pk", "schema", "started_at"))
    if not running:
        return 0
    leases = {lease.name: lease for lease in SyncLease.objects.filter(name__in={lease_name(s) for _, s, _ in running})}
    lost = []
    for pk, schema_id, started_at in running:
        lease = leases.get(lease_name(schema_id))
        holds = lease is not None and _run_pk_of(lease.holder) == pk
        if holds:
            if lease.expires_at <= now or _holder_is_dead(lease.holder):
                lost.append(pk)
        elif started_at < now - timedelta(seconds=LOST_GRACE_SECONDS):
            lost.append(pk)
    return _close_lost(lost) if lost else 0


# --- Counts and tables ----------------------------------------------------------------------

@dataclass
class Counts:
    sent: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: int = 0
    failed: int = 0

    def add(self, other: "Counts") -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class _Tables:
    """Names and SQL fragments of one schema's sync, computed once per run."""

    description: SchemaDescription

    def __post_init__(self):
        self.cloud_alias = ddl.table_alias(self.description)
        self.cloud_vendor = connections[self.cloud_alias].vendor
        self.local_vendor = connections[ddl.LOCAL].vendor
        self.attributes = self.description.attributes
        self.cloud_table = quote(self.description.sql_table, self.cloud_vendor)
        self.staging_table = quote(self.description.staging_table, self.local_vendor)
        self.cloud_columns = ddl.desired_tables(self.description)[0].columns
        # Links set by key: the staged lookups come into the batch table's `links` column, and a row
        # whose target is missing gets op UNRESOLVED and its reason in `lfail` (see _resolve_links).
        self.links = ddl.has_link_lookups(self.description)

    def lq(self, name: str) -> str:
        return quote(name, self.local_vendor)

    def cq(self, name: str) -> str:
        return quote(name, self.cloud_vendor)

    def pending_select(self, staging_ref: str) -> str:
        """The SELECT of up to %s pending rows after sequence %s, in the batch table's column order."""
        lq = self.lq
        business = ", ".join(lq(a.sql_name) for a in self.attributes)
        # The supplied-column list is wrapped in commas so SQL can test ',name,' in it.
        return (
            f"SELECT {lq(ddl.COL_SEQ)}, {lq(ddl.COL_VERSION)}, {lq(ddl.COL_OPERATION)}, {lq(ddl.COL_KEY)}, "
            f"',' || {lq(ddl.COL_COLUMNS)} || ',', {business}{', ' + lq(ddl.COL_LINKS) if self.links else ''} "
            f"FROM {staging_ref} "
            f"WHERE {lq(ddl.COL_STATUS)} = '{ddl.STATUS_PENDING}' AND {lq(ddl.COL_SEQ)} > %s "
            f"ORDER BY {lq(ddl.COL_SEQ)} LIMIT %s"
        )


def _parse_key(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in (raw or "id").split(",") if part.strip()) or ("id",)


# --- Routes: how a batch travels between the staging and the cloud database -------------------

ATTACHED = "attached"  # both SQLite files: the cloud connection ATTACHes staging, rows never reach Python
COPY = "copy"  # both PostgreSQL: COPY out of staging into the cloud, blocks passed through untouched
ROWS = "rows"  # anything else (or inside a caller's transaction): fetch, then executemany

STAGING_SCHEMA = "stg"  # the name the staging file is attached under in the cloud connection


def _route(tables: _Tables) -> str:
    local, cloud = connections[ddl.LOCAL], connections[tables.cloud_alias]
    if tables.local_vendor == tables.cloud_vendor == ddl.POSTGRESQL:
        return COPY
    # ATTACH is refused inside a transaction, and an attached file shows only committed rows: a caller
    # holding a transaction open (tests do) gets the portable route.
    if (tables.local_vendor == tables.cloud_vendor == ddl.SQLITE and local is not cloud
            and not local.in_atomic_block and not cloud.in_atomic_block):
        return ATTACHED
    return ROWS


def _attach_staging(tables: _Tables) -> None:
    """Attach the staging file to the cloud connection once per connection (Django may reconnect)."""
    path = str(connections[ddl.LOCAL].settings_dict["NAME"])
    with connections[tables.cloud_alias].cursor() as cursor:
        cursor.execute("PRAGMA database_list")
        if any(name == STAGING_SCHEMA for _, name, _ in cursor.fetchall()):
            return
        cursor.execute(f"ATTACH DATABASE %s AS {STAGING_SCHEMA}", [path])
        cursor.execute(f"PRAGMA {STAGING_SCHEMA}.synchronous = NORMAL")


# --- Applying a batch in the cloud ----------------------------------------------------------

BATCH_TABLE = "stg_sync_batch"


@dataclass
class Step:
    """One applied batch: its sequence range, its counts, and where its outcomes wait to be recorded:
    the batch table of the route that applied it, or `outcomes` when there is no batch table."""

    first_seq: int
    last_seq: int
    counts: Counts
    route: str
    outcomes: list | None = None


def _batch_table_sql(tables: _Tables) -> str:
    cq, vendor = tables.cq, tables.cloud_vendor
    columns = [f"{cq('seq')} BIGINT", f"{cq('version')} BIGINT", f"{cq('op')} VARCHAR(16)",
               f"{cq('keyspec')} VARCHAR(255)", f"{cq('cols')} TEXT"]
    columns += [f"{cq(f'v{i}')} {ddl.sql_type(column, vendor)}" for i, column in enumerate(tables.cloud_columns)]
    if tables.links:
        columns += [f"{cq('links')} TEXT", f"{cq('lfail')} TEXT"]
    columns.append(f"{cq('existed')} SMALLINT NOT NULL DEFAULT 0")
    return f"CREATE TEMPORARY TABLE {cq(BATCH_TABLE)} ({', '.join(columns)})"


def _next_pending(tables: _Tables, columns: tuple[str, ...], *, after: int, route: str = ROWS) -> tuple | None:
    """`columns` of the first pending row after `after`, None when nothing is pending. On the attached
    route it is read through the cloud connection, inside the transaction that applies the batch."""
    lq = tables.lq
    alias, staging = ddl.LOCAL, tables.staging_table
    if route == ATTACHED:
        alias, staging = tables.cloud_alias, f"{STAGING_SCHEMA}.{staging}"
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(map(lq, columns))} FROM {staging} WHERE {lq(ddl.COL_STATUS)} = %s "
                       f"AND {lq(ddl.COL_SEQ)} > %s ORDER BY {lq(ddl.COL_SEQ)} LIMIT 1", [ddl.STATUS_PENDING, after])
        return cursor.fetchone()


def _fill(tables: _Tables, route: str, cursor, *, after: int, limit: int, key_indexes: list[int]) -> None:
    """Put up to `limit` pending rows after `after` into the batch table (cloud connection's `cursor`),
    then mark those whose key exists in the cloud table."""
    cq = tables.cq
    columns = ", ".join(cq(c) for c in ("seq", "version", "op", "keyspec", "cols",
                                          *(f"v{i}" for i in range(len(tables.attributes))),
                                          *(("links",) if tables.links else ())))
    into = f"INSERT INTO {cq(BATCH_TABLE)} ({columns}) "
    if route == ATTACHED:
        cursor.execute(into + tables.pending_select(f"{STAGING_SCHEMA}.{tables.staging_table}"), [after, limit])
    elif route == COPY:
        # COPY takes no parameters; both are integers.
        select = tables.pending_select(tables.staging_table) % (int(after), int(limit))
        with connections[ddl.LOCAL].cursor() as local, \
                local.cursor.copy(f"COPY ({select}) TO STDOUT") as source, \
                cursor.cursor.copy(f"COPY {cq(BATCH_TABLE)} ({columns}) FROM STDIN") as target:
            for block in source:
                target.write(block)
    else:
        with connections[ddl.LOCAL].cursor() as local:
            local.execute(tables.pending_select(tables.staging_table), [after, limit])
            rows = local.fetchall()
        placeholders = ", ".join(["%s"] * (5 + len(tables.attributes) + (1 if tables.links else 0)))
        cursor.executemany(f"{into}VALUES ({placeholders})", rows)
    found = " AND ".join(f"c.{cq(tables.attributes[i].sql_name)} = {cq(BATCH_TABLE)}.{cq(f'v{i}')}"
                         for i in key_indexes)
    cursor.execute(f"UPDATE {cq(BATCH_TABLE)} SET {cq('existed')} = 1 "
                   f"WHERE EXISTS (SELECT 1 FROM {tables.cloud_table} c WHERE {found})")


def _cut(tables: _Tables, cursor, *, keyspec: str, key: tuple[str, ...], key_indexes: list[int]) -> None:
    """Keep the longest prefix of the batch with one key shape and no key value twice.

    Applying a batch is set-based, so two operations on one record inside it would race; ending the
    batch at the repeat keeps ingestion order (the rest comes in the next batch). On the primary key
    the staging table's unique index already rules repeats out.
    """
    cq, batch = tables.cq, tables.cq(BATCH_TABLE)
    cuts = f"SELECT MIN({cq('seq')}) AS s FROM {batch} WHERE {cq('keyspec')} <> %s"
    if set(key) != set(tables.description.primary_key):
        key_values = ", ".join(cq(f"v{i}") for i in key_indexes)
        cuts = (f"SELECT MIN(s) FROM ({cuts} UNION ALL SELECT MIN(seq) FROM (SELECT {cq('seq')} AS seq, "
                f"ROW_NUMBER() OVER (PARTITION BY {key_values} ORDER BY {cq('seq')}) AS n FROM {batch}) repeats "
                f"WHERE n > 1) cuts")
    cursor.execute(cuts, [keyspec])
    cut = cursor.fetchone()[0]
    if cut is not None:
        cursor.execute(f"DELETE FROM {batch} WHERE {cq('seq')} >= %s", [cut])


def _resolve_links(tables: _Tables, cursor) -> None:
    """Set the foreign keys of the batch's links set by key, from the target's cloud table; a row whose
    target is missing is not applied (op UNRESOLVED) and fails with the reason. The lookups go through
    `resolve_links`, the one resolver Write uses too: one SELECT per link and key shape for the whole
    batch, and one executemany back into the batch table (the key values are converted to the target's
    types in Python, which portable SQL over the JSON column could not do on both databases)."""
    if not tables.links:
        return
    cq, batch = tables.cq, tables.cq(BATCH_TABLE)
    cursor.execute(f"SELECT {cq('seq')}, {cq('links')} FROM {batch} WHERE {cq('links')} IS NOT NULL "
                   f"AND {cq('op')} <> %s", [OP_DELETE])
    rows = [(seq, [(name, tuple(key), tuple(values)) for name, (key, values) in json.loads(text).items()])
            for seq, text in cursor.fetchall()]
    if not rows:
        return
    found, failed = resolve_links(tables.description, [lookup for _, lookups in rows for lookup in lookups])
    index = {a.name: i for i, a in enumerate(tables.attributes)}
    sets: dict[tuple[str, ...], list] = {}
    failures = []
    for seq, lookups in rows:
        reasons = [failed[lookup] for lookup in lookups if lookup in failed]
        if reasons:
            failures.append(("; ".join(reasons), seq))
            continue
        values = {fk: value for lookup in lookups for fk, value in found[lookup].items()}
        sets.setdefault(tuple(values), []).append([*values.values(), seq])
    for names, params in sets.items():
        assignments = ", ".join(f"{cq(f'v{index[n]}')} = %s" for n in names)
        cursor.executemany(f"UPDATE {batch} SET {assignments} WHERE {cq('seq')} = %s", params)
    if failures:
        cursor.executemany(f"UPDATE {batch} SET {cq('op')} = '{OP_UNRESOLVED}', {cq('lfail')} = %s "
                           f"WHERE {cq('seq')} = %s", failures)


def _merge_xml_data(tables: _Tables, cursor, key_indexes: list[int]) -> None:
    """Lay the mData documents of the batch's updates over the cloud rows' (fields a staged row does not
    carry keep their cloud value). XML cannot be merged in portable SQL, so the few rows concerned
    (updates that supplied XML fields) pass through Python: one SELECT joined on the cloud table and
    one executemany back into the batch table, whatever the route."""
    data = next((i for i, a in enumerate(tables.attributes) if a.name == XML_DATA_ATTR), None)
    if data is None:
        return
    cq, batch = tables.cq, tables.cq(BATCH_TABLE)
    column = cq(tables.attributes[data].sql_name)
    match = " AND ".join(f"c.{cq(tables.attributes[i].sql_name)} = b.{cq(f'v{i}')}" for i in key_indexes)
    find = "strpos" if tables.cloud_vendor == ddl.POSTGRESQL else "instr"
    cursor.execute(f"SELECT b.{cq('seq')}, c.{column}, b.{cq(f'v{data}')} FROM {batch} b JOIN {tables.cloud_table} c "
                   f"ON {match} WHERE b.{cq('existed')} = 1 AND b.{cq('op')} IN (%s, %s) "
                   f"AND {find}(b.{cq('cols')}, {_literal(f',{XML_DATA_ATTR},')}) > 0 AND c.{column} IS NOT NULL",
                   [OP_INSERT_OR_UPDATE, OP_UPDATE])
    merged = [(merge_xml_data(cloud, staged), seq) for seq, cloud, staged in cursor.fetchall()]
    if merged:
        cursor.executemany(f"UPDATE {batch} SET {cq(f'v{data}')} = %s WHERE {cq('seq')} = %s", merged)


def _insert_default(column: ddl.ColumnSpec) -> str:
    return column.default if column.default is not None else "NULL"


DUPLICATE_ERROR = ("duplicate key: a record with this key already exists in the cloud table "
                   "(Ingest only inserts; use IngestExt to update)")
SKIPPED_ERROR = "update skipped: no record with this key in the cloud"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _outcome_columns(tables: _Tables) -> str:
    """seq, version, status, error of the batch table's rows, the outcome decided from op and existed."""
    cq = tables.cq
    op, existed = cq("op"), cq("existed")
    failed, skipped = f"{op} = '{OP_INSERT}' AND {existed} = 1", f"{op} = '{OP_UPDATE}' AND {existed} = 0"
    unresolved = f"{op} = '{OP_UNRESOLVED}'"
    link_error = f"WHEN {unresolved} THEN {cq('lfail')} " if tables.links else ""
    return (f"{cq('seq')} AS seq, {cq('version')} AS version, CASE WHEN {failed} OR {unresolved} THEN "
            f"'{ddl.STATUS_FAILED}' WHEN {skipped} THEN '{ddl.STATUS_SKIPPED}' ELSE '{ddl.STATUS_SYNCED}' END AS status, "
            f"CASE WHEN {failed} THEN {_literal(DUPLICATE_ERROR)} {link_error}WHEN {skipped} THEN "
            f"{_literal(SKIPPED_ERROR)} END AS error")


def _ledger_sql(tables: _Tables) -> str:
    """INSERT of one ledger entry whose outcomes JSON the database builds from the batch table."""
    cq, table = tables.cq, SyncLedger._meta.db_table
    outcomes = ("json_agg(json_build_array(seq, version, status, error))::jsonb"
                if tables.cloud_vendor == ddl.POSTGRESQL else "json_group_array(json_array(seq, version, status, error))")
    return (f"INSERT INTO {cq(table)} ({cq('schema')}, {cq('outcomes')}, {cq('created_at')}) "
            f"SELECT %s, {outcomes}, %s FROM (SELECT {_outcome_columns(tables)} FROM {cq(BATCH_TABLE)}) AS o")


def apply_next(tables: _Tables, *, after: int, limit: int) -> Step | None:
    """Apply the next batch (up to `limit` pending rows after `after`) in ONE cloud transaction, with
    its ledger entry; None when nothing is pending. The outcomes stay in the cloud connection's batch
    table for `record_step`. Raises IntegrityError/DataError when the cloud refuses a row of it.
    """
    route = _route(tables)
    if route == ATTACHED:
        _attach_staging(tables)
    cq, batch, target = tables.cq, tables.cq(BATCH_TABLE), tables.cloud_table
    op, existed = f"b.{cq('op')}", f"b.{cq('existed')}"
    with transaction.atomic(using=tables.cloud_alias), connections[tables.cloud_alias].cursor() as cursor:
        first = _next_pending(tables, (ddl.COL_KEY,), after=after, route=route)
        if first is None:
            return None
        keyspec = first[0]
        key = _parse_key(keyspec)
        key_indexes = [i for i, a in enumerate(tables.attributes) if a.name in key]
        cursor.execute(f"DROP TABLE IF EXISTS {batch}")
        cursor.execute(_batch_table_sql(tables))
        _fill(tables, route, cursor, after=after, limit=limit, key_indexes=key_indexes)
        _cut(tables, cursor, keyspec=keyspec, key=key, key_indexes=key_indexes)
        _resolve_links(tables, cursor)
        _merge_xml_data(tables, cursor, key_indexes)

        def match(cloud_ref: str, batch_ref: str) -> str:
            return " AND ".join(f"{cloud_ref}.{cq(tables.attributes[i].sql_name)} = {batch_ref}.{cq(f'v{i}')}"
                                for i in key_indexes)

        def supplied(i: int) -> str:
            # Key columns and the id always count; others only when the caller supplied them.
            attribute = tables.attributes[i]
            if i in key_indexes or attribute.name == "id":
                return "1 = 1"
            find = "strpos" if tables.cloud_vendor == ddl.POSTGRESQL else "instr"
            return f"{find}(b.{cq('cols')}, {_literal(f',{attribute.name},')}) > 0"

        key_columns = ", ".join(cq(tables.attributes[i].sql_name) for i in key_indexes)
        batch_keys = ", ".join(f"b.{cq(f'v{i}')}" for i in key_indexes)
        updatable = [i for i, a in enumerate(tables.attributes) if i not in key_indexes and a.name != "id"]
        set_clause = ", ".join(
            f"{cq(tables.attributes[i].sql_name)} = CASE WHEN {supplied(i)} THEN b.{cq(f'v{i}')} "
            f"ELSE {target}.{cq(tables.attributes[i].sql_name)} END" for i in updatable
        )
        insert_columns = ", ".join(cq(a.sql_name) for a in tables.attributes)
        insert_values = ", ".join(
            f"CASE WHEN {supplied(i)} THEN b.{cq(f'v{i}')} ELSE {_insert_default(column)} END"
            for i, column in enumerate(tables.cloud_columns)
        )
        # IN over the batch, not EXISTS per cloud row: SQLite then seeks the cloud key index for each batch
        # row instead of scanning the whole cloud table once per batch.
        cursor.execute(f"DELETE FROM {target} WHERE ({key_columns}) IN (SELECT {batch_keys} FROM {batch} b "
                       f"WHERE {op} = %s)", [OP_DELETE])
        if set_clause:
            cursor.execute(f"UPDATE {target} SET {set_clause} FROM {batch} b WHERE {existed} = 1 "
                           f"AND {op} IN (%s, %s) AND {match(target, 'b')}", [OP_INSERT_OR_UPDATE, OP_UPDATE])
        cursor.execute(f"INSERT INTO {target} ({insert_columns}) SELECT {insert_values} FROM {batch} b "
                       f"WHERE {existed} = 0 AND {op} IN (%s, %s) ORDER BY b.{cq('seq')}",
                       [OP_INSERT, OP_INSERT_OR_UPDATE])
        now = connections[tables.cloud_alias].ops.adapt_datetimefield_value(timezone.now())
        cursor.execute(_ledger_sql(tables), [tables.description.id, now])
        counts, first_seq, last_seq = _batch_counts(tables, cursor)
    return Step(first_seq=first_seq, last_seq=last_seq, counts=counts, route=route)


def _batch_counts(tables: _Tables, cursor) -> tuple[Counts, int, int]:
    """The batch's counts, its first and its last sequence, in one pass over the batch table."""
    cq = tables.cq
    op, existed = cq("op"), cq("existed")
    cases = {
        "inserted": f"{existed} = 0 AND {op} IN ('{OP_INSERT}', '{OP_INSERT_OR_UPDATE}')",
        "updated": f"{existed} = 1 AND {op} IN ('{OP_INSERT_OR_UPDATE}', '{OP_UPDATE}')",
        "deleted": f"{existed} = 1 AND {op} = '{OP_DELETE}'",
        "skipped": f"{existed} = 0 AND {op} = '{OP_UPDATE}'",
        "failed": f"({existed} = 1 AND {op} = '{OP_INSERT}') OR {op} = '{OP_UNRESOLVED}'",
    }
    sums = ", ".join(f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)" for condition in cases.values())
    cursor.execute(f"SELECT COUNT(*), MIN({cq('seq')}), MAX({cq('seq')}), {sums} FROM {cq(BATCH_TABLE)}")
    sent, first_seq, last_seq, *numbers = cursor.fetchone()
    return Counts(sent=sent, **{name: int(n or 0) for name, n in zip(cases, numbers)}), first_seq, last_seq


def fail_next(tables: _Tables, *, after: int, error: Exception) -> Step | None:
    """Fail the next pending row alone (the cloud refused it even in a batch of one), through the ledger."""
    row = _next_pending(tables, (ddl.COL_SEQ, ddl.COL_VERSION), after=after)
    if row is None:
        return None
    outcomes = [(row[0], row[1], ddl.STATUS_FAILED, f"cloud database refused the row: {error}")]
    with transaction.atomic(using=tables.cloud_alias):
        SyncLedger.objects.using(tables.cloud_alias).create(schema=tables.description.id,
                                                            outcomes=[list(o) for o in outcomes])
    return Step(first_seq=row[0], last_seq=row[0], counts=Counts(sent=1, failed=1), route=ROWS, outcomes=outcomes)


# --- Recording outcomes in staging ----------------------------------------------------------

def _outcome_source(vendor: str) -> str:
    """A FROM item `o(seq, version, status, error)` over outcomes sent as parameters: four arrays on
    PostgreSQL, one JSON array of [seq, version, status, error] on SQLite."""
    if vendor == ddl.POSTGRESQL:
        return "unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) AS o(seq, version, status, error)"
    return ("(SELECT json_extract(value, '$[0]') AS seq, json_extract(value, '$[1]') AS version, "
            "json_extract(value, '$[2]') AS status, json_extract(value, '$[3]') AS error FROM json_each(%s)) AS o")


def _record_in(cursor, tables: _Tables, *, staging: str, source: str, params: list, seqs: tuple[int, int, int]) -> None:
    """Write outcomes from `source` (a FROM item o(seq, version, status, error)) to the staging rows whose
    version is unchanged: one set-based UPDATE (and one more in the rare case some versions changed).
    `seqs` is (first, last, count) of the outcomes' sequences."""
    lq = tables.lq
    first, last, size = seqs
    # The range lets both databases read the batch's rows by sequence instead of joining the whole
    # table. On SQLite `|| ''` also keeps the status index out of the join.
    status = f"{staging}.{lq(ddl.COL_STATUS)}" + (" || ''" if tables.local_vendor == ddl.SQLITE else "")
    same_row = (f"{staging}.{lq(ddl.COL_SEQ)} = o.seq AND {staging}.{lq(ddl.COL_SEQ)} BETWEEN {int(first)} "
                f"AND {int(last)} AND {status} = '{ddl.STATUS_PENDING}'")
    cursor.execute(
        f"UPDATE {staging} SET {lq(ddl.COL_STATUS)} = o.status, {lq(ddl.COL_ERROR)} = o.error, "
        f"{lq(ddl.COL_SYNCED_AT)} = CASE WHEN o.status = %s THEN NULL ELSE %s END, "
        f"{lq(ddl.COL_ATTEMPTS)} = {lq(ddl.COL_ATTEMPTS)} + 1 FROM {source} "
        f"WHERE {same_row} AND {staging}.{lq(ddl.COL_VERSION)} = o.version",
        [ddl.STATUS_FAILED, timezone.now(), *params],
    )
    if cursor.rowcount == size:
        return
    # A row changed by IngestExt while its batch was applied keeps its new version and stays pending. If
    # it was an insert, IngestExt merged the update into it and kept `insert` (the record did not exist
    # yet), but the insert has now reached the cloud: re-applied as an insert it would fail as a
    # "duplicate key" and lose the update. It becomes insertOrUpdate, which writes the merged values.
    # (A pending row's operation is `insert` only if it was from the start, so the rule also holds for
    # outcomes recovered from the ledger.)
    cursor.execute(
        f"UPDATE {staging} SET {lq(ddl.COL_OPERATION)} = %s FROM {source} "
        f"WHERE {same_row} AND {staging}.{lq(ddl.COL_VERSION)} <> o.version "
        f"AND o.status = %s AND {staging}.{lq(ddl.COL_OPERATION)} = %s",
        [OP_INSERT_OR_UPDATE, *params, ddl.STATUS_SYNCED, OP_INSERT],
    )


@retry_on_deadlock()
def record_outcomes(tables: _Tables, outcomes: list[tuple[int, int, str, str | None]]) -> None:
    """Write outcomes [(seq, version, status, error), ...] to staging, in one local transaction."""
    if not outcomes:
        return
    staging = tables.staging_table
    if tables.local_vendor == ddl.POSTGRESQL:
        params = [list(column) for column in zip(*outcomes)]
    else:
        params = [json.dumps([list(o) for o in outcomes])]
    source = _outcome_source(tables.local_vendor)
    seqs = [o[0] for o in outcomes]
    bounds = (min(seqs), max(seqs), len(seqs))
    with transaction.atomic(using=ddl.LOCAL), connections[ddl.LOCAL].cursor() as cursor:
        if tables.local_vendor == ddl.POSTGRESQL:
            # Lock the batch's rows in sequence order first, the order IngestExt locks them in, so the
            # two rarely deadlock (retry_on_deadlock covers the rest).
            lq = tables.lq
            cursor.execute(f"SELECT 1 FROM {staging} WHERE {lq(ddl.COL_SEQ)} BETWEEN %s AND %s AND "
                           f"{lq(ddl.COL_SEQ)} = ANY(%s) ORDER BY {lq(ddl.COL_SEQ)} FOR UPDATE",
                           [bounds[0], bounds[1], seqs])
        _record_in(cursor, tables, staging=staging, source=source, params=params, seqs=bounds)


def record_step(tables: _Tables, step: Step) -> None:
    """Record a step's outcomes in staging (version-checked), then drop its ledger entry."""
    if step.outcomes is not None:
        record_outcomes(tables, step.outcomes)
    elif step.route == ATTACHED:
        # Straight from the batch table into the attached staging file: no row passes through Python.
        with transaction.atomic(using=tables.cloud_alias), connections[tables.cloud_alias].cursor() as cursor:
            source = f"(SELECT {_outcome_columns(tables)} FROM temp.{tables.cq(BATCH_TABLE)}) AS o"
            _record_in(cursor, tables, staging=f"{STAGING_SCHEMA}.{tables.staging_table}", source=source,
                       params=[], seqs=(step.first_seq, step.last_seq, step.counts.sent))
    else:
        cq = tables.cq
        with connections[tables.cloud_alias].cursor() as cursor:
            cursor.execute(f"SELECT {_outcome_columns(tables)} FROM {cq(BATCH_TABLE)} ORDER BY {cq('seq')}")
            outcomes = cursor.fetchall()
        record_outcomes(tables, outcomes)
    SyncLedger.objects.using(tables.cloud_alias).filter(schema=tables.description.id).delete()


def recover_ledger(tables: _Tables) -> int:
    """Record the outcomes a crashed run left in the ledger; returns how many rows they covered."""
    covered = 0
    ledger = SyncLedger.objects.using(tables.cloud_alias).filter(schema=tables.description.id)
    for entry in ledger.order_by("pk"):
        record_outcomes(tables, [tuple(item) for item in entry.outcomes])
        covered += len(entry.outcomes)
        SyncLedger.objects.using(tables.cloud_alias).filter(pk=entry.pk).delete()
    return covered


def _drop_batch_table(tables: _Tables) -> None:
    connection = connections[tables.cloud_alias]
    if connection.connection is not None and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {tables.cq(BATCH_TABLE)}")


# --- The service ----------------------------------------------------------------------------

def _tables_for(schema: Schema) -> _Tables:
    if schema.schema_id in PROCESSED_ELSEWHERE:
        raise SyncRefused(f"{schema.schema_id} holds requests processed by {PROCESSED_ELSEWHERE[schema.schema_id]}, "
                          "not copied by the sync.")
    if not schema.auto_stg:
        raise SyncRefused(f"{schema.schema_id} has no staging (autoStg is off); nothing to synchronize.")
    if schema.structure_state != StructureState.UP_TO_DATE:
        raise SyncRefused(
            f"The database structure of {schema.schema_id} is not up to date; update it before synchronizing "
            f"(admin action 'Update database structure' or manage.py update_structure {schema.schema_id})."
        )
    return _Tables(schema.description)


def staging_sync(*, schema: Schema, trigger: str, user, batch_size: int = BATCH_SIZE, on_batch=None) -> SyncRun:
    """Synchronize the pending staged rows of `schema` into its cloud table; returns the recorded run.

    Needs `staging.run_sync` (commands and tasks pass SYSTEM). Safe to run at once from several
    processes (the lease lets one through; the others record a `busy` run) and safe to re-run after a
    crash at any point. `on_batch(counts)` reports progress.
    """
    sync_permission_require(user=user)
    run = SyncRun.objects.create(schema=schema.schema_id, trigger=trigger)
    holder = run_holder(run)
    lease = lease_name(schema.schema_id)
    if not lease_acquire(name=lease, holder=holder):
        return _finish(run, Counts(), SyncRun.Status.BUSY, "Another synchronization of this schema is running.")
    counts = Counts()
    tables = None
    try:
        tables = _tables_for(schema)
        recover_ledger(tables)
        after, limit = 0, batch_size
        while True:
            try:
                step = apply_next(tables, after=after, limit=limit)
            except (IntegrityError, DataError) as exc:
                # The cloud refused a row of the batch: halve until the guilty rows stand alone.
                if limit > 1:
                    limit //= 2
                    continue
                step = fail_next(tables, after=after, error=exc)
            if step is None:
                break
            record_step(tables, step)
            counts.add(step.counts)
            after, limit = step.last_seq, min(batch_size, limit * 2)
            lease_acquire(name=lease, holder=holder)  # renew
            if settings.DEBUG:
                # DEBUG keeps up to 9,000 statements per connection with their parameters inlined:
                # memory would grow with the backlog.
                reset_queries()
            if on_batch:
                on_batch(counts)
    except SyncRefused as exc:
        return _finish(run, counts, SyncRun.Status.FAILED, exc.message)
    except DatabaseError as exc:
        logger.exception("Synchronization of %s stopped", schema.schema_id)
        return _finish(run, counts, SyncRun.Status.FAILED, f"Database error, rows left pending: {exc}")
    finally:
        if tables is not None:
            _drop_batch_table(tables)
        lease_release(name=lease, holder=holder)
    status = SyncRun.Status.PARTIAL if counts.failed else SyncRun.Status.SUCCEEDED
    return _finish(run, counts, status, "")


def _finish(run: SyncRun, counts: Counts, status: str, error: str) -> SyncRun:
    for name, value in asdict(counts).items():
        setattr(run, name, value)
    run.status = status
    run.error = error
    run.finished_at = timezone.now()
    run.save()
    return run


def staged_schemas() -> list[Schema]:
    """Schemas the sync copies: staging on, and not a request log with its own processor."""
    schemas = Schema.objects.filter(auto_stg=True).order_by("namespace", "name")
    return [s for s in schemas if s.schema_id not in PROCESSED_ELSEWHERE]


def staging_sync_all(*, trigger: str, user, batch_size: int = BATCH_SIZE) -> list[SyncRun]:
    """Synchronize every staged schema, one after the other (first closing runs whose worker died).
    Needs `staging.run_sync`."""
    sync_permission_require(user=user)
    sync_runs_close_lost()
    return [staging_sync(schema=s, trigger=trigger, user=user, batch_size=batch_size) for s in staged_schemas()]


# --- Manual triggers: queue, never run in the request ------------------------------------------

SYNC_PERMISSION = "staging.run_sync"


def sync_permission_require(*, user) -> None:
    """Unauthenticated or Forbidden unless `user` may start syncs and change failed rows (staging.run_sync)."""
    permission_require(user, SYNC_PERMISSION, "start a synchronization or change failed rows")


def _require_syncable(schema: Schema) -> None:
    """Refuse at once what the run would refuse anyway, so the caller hears it instead of the audit log."""
    try:
        _tables_for(schema)
    except SyncRefused as exc:
        raise SyncRefused(exc.message, [Problem(exc.message, value=schema.schema_id)]) from None


def sync_enqueue(*, schema: str | None, trigger: str, user) -> str:
    """Queue a synchronization of the schema `schema` ("dem:sampleTable"; the Stg id works too), or of
    every staged schema when None; returns the django-q2 task name (`django_q.tasks.fetch` takes it).

    Needs `staging.run_sync`. The task is handed to the broker when the caller's transaction on the
    local database commits (at once outside a transaction), so a rolled-back request queues nothing.
    """
    from django_q.tasks import async_task
    from staging.services import schema_get

    sync_permission_require(user=user)
    if schema is None:
        func, args, label = "staging.tasks.sync_all", (trigger,), "all"
    else:
        found = schema_get(schema_id=schema)
        _require_syncable(found)
        func, args, label = "staging.tasks.sync_schema", (found.schema_id, trigger), found.schema_id
    # The name is ours, not the broker's id, so it is known before the task exists (on_commit).
    name = f"sync {label} {uuid.uuid4().hex[:16]}"
    transaction.on_commit(
        lambda: async_task(func, *args, task_name=name, group="staging sync"), using=ddl.LOCAL
    )
    return name


# --- Retention: synced rows go, pending and failed rows stay whatever their age -------

PURGE_BATCH = 5000
PURGEABLE_STATUSES = (ddl.STATUS_SYNCED, ddl.STATUS_SKIPPED)


def _db_time(value: datetime, vendor: str):
    # SQLite columns hold UTC text; the naive ISO form compares correctly with what ingest and the sync write.
    if vendor == ddl.SQLITE:
        return value.astimezone(dt_timezone.utc).replace(tzinfo=None).isoformat(" ", timespec="microseconds")
    return value


def _staging_table_of(schema: Schema) -> str | None:
    table = schema.applied_table("staging") if schema.auto_stg else None
    return table["name"] if table else None


def _purge_table(table: str, cutoff: datetime, batch_size: int) -> int:
    connection = connections[ddl.LOCAL]
    q = lambda name: quote(name, connection.vendor)  # noqa: E731
    statuses = ", ".join(["%s"] * len(PURGEABLE_STATUSES))
    # Both statements repeat the full condition: a row re-ingested (pending again) between them stays.
    old = (f"{q(ddl.COL_STATUS)} IN ({statuses}) AND "
           f"COALESCE({q(ddl.COL_SYNCED_AT)}, {q(ddl.COL_LAST_MODIFIED)}) < %s")
    params = [*PURGEABLE_STATUSES, _db_time(cutoff, connection.vendor)]
    upper_sql = (f"SELECT MAX(s) FROM (SELECT {q(ddl.COL_SEQ)} AS s FROM {q(table)} WHERE {old} "
                 f"AND {q(ddl.COL_SEQ)} > %s ORDER BY {q(ddl.COL_SEQ)} LIMIT %s) batch")
    delete_sql = f"DELETE FROM {q(table)} WHERE {q(ddl.COL_SEQ)} > %s AND {q(ddl.COL_SEQ)} <= %s AND {old}"
    deleted, after = 0, 0
    while True:
        with transaction.atomic(using=ddl.LOCAL), connection.cursor() as cursor:
            cursor.execute(upper_sql, [*params, after, batch_size])
            upper = cursor.fetchone()[0]
            if upper is None:
                return deleted
            cursor.execute(delete_sql, [after, upper, *params])
            deleted += cursor.rowcount
        after = upper


def staging_purge(*, user, older_than_days: int | None = None, batch_size: int = PURGE_BATCH) -> dict[str, int]:
    """Delete staged rows that reached the cloud (synced or skipped) more than `older_than_days` ago
    (default STAGING_RETENTION_DAYS); returns the count deleted per schema id.

    Pending and failed rows are never deleted, however old: they are data not yet in the cloud. Works
    in batches of `batch_size` rows, one short transaction and one DELETE each, so ingestion goes on.
    Needs `staging.run_sync` (the purge command and the daily task pass SYSTEM).
    """
    sync_permission_require(user=user)
    days = settings.STAGING_RETENTION_DAYS if older_than_days is None else older_than_days
    if days < 0:
        raise InvalidInput("The retention period cannot be negative.",
                           [Problem("give a number of days of 0 or more", attribute="days", value=str(days))])
    cutoff = timezone.now() - timedelta(days=days)
    result = {}
    for schema in Schema.objects.filter(auto_stg=True).order_by("namespace", "name"):
        table = _staging_table_of(schema)
        if table:
            result[schema.schema_id] = _purge_table(table, cutoff, batch_size)
    return result


# --- Failed rows: retry once the cause is fixed, or discard -------------------------------------

SEQ_CHUNK = 500  # sequence numbers per IN (...) list, far below SQLite's parameter limit


def _failed_rows_update(schema: Schema, seqs, make_sql) -> int:
    table = _staging_table_of(schema)
    if table is None:
        raise Conflict(f"{schema.schema_id} has no staging table, so it has no failed rows.",
                       [Problem("turn staging on and update the database structure", value=schema.schema_id)])
    connection = connections[ddl.LOCAL]
    q = lambda name: quote(name, connection.vendor)  # noqa: E731
    where = f"{q(ddl.COL_STATUS)} = %s"
    seqs = None if seqs is None else sorted({int(s) for s in seqs})
    chunks = [None] if seqs is None else [seqs[i:i + SEQ_CHUNK] for i in range(0, len(seqs), SEQ_CHUNK)]
    changed = 0
    with transaction.atomic(using=ddl.LOCAL), connection.cursor() as cursor:
        for chunk in chunks:
            sql, params = make_sql(q, q(table), where), [ddl.STATUS_FAILED]
            if chunk is not None:
                sql += f" AND {q(ddl.COL_SEQ)} IN ({', '.join(['%s'] * len(chunk))})"
                params += chunk
            cursor.execute(sql, params)
            changed += cursor.rowcount
    return changed


def failed_rows_retry(*, schema: Schema, user, seqs=None) -> int:
    """Make the failed rows of `schema` (all, or those whose sequence is in `seqs`) pending again, so the
    next sync applies them; returns how many. Attempts are kept, the error is cleared. Needs
    `staging.run_sync`.
    """
    sync_permission_require(user=user)
    # A new version: a ledger entry left by a crash must not stamp the old outcome on the retried row.
    return _failed_rows_update(schema, seqs, lambda q, table, where: (
        f"UPDATE {table} SET {q(ddl.COL_STATUS)} = '{ddl.STATUS_PENDING}', {q(ddl.COL_ERROR)} = NULL, "
        f"{q(ddl.COL_VERSION)} = {q(ddl.COL_VERSION)} + 1 WHERE {where}"
    ))


def failed_rows_discard(*, schema: Schema, user, seqs=None) -> int:
    """Delete the failed rows of `schema` (all, or those whose sequence is in `seqs`); returns how many.

    Only failed rows: a row re-ingested since it failed is pending and stays. Needs `staging.run_sync`.
    """
    sync_permission_require(user=user)
    return _failed_rows_update(schema, seqs, lambda q, table, where: f"DELETE FROM {table} WHERE {where}")
