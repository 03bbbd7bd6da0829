import hashlib
import threading
from collections import OrderedDict
from functools import cache, cached_property

from django.conf import settings
from django.db import connections, models

from staging import ddl
from campaignsite.errors import SchemaInvalid
from staging.srcschema import SchemaDescription, parse_srcschema


_STORED = 2**31  # stored sources passed the size limit when they were saved


class SchemaRegistry:
    """Descriptions of the registered schemas: extensions merged in, references resolved.

    A schema's description depends on other rows: the extensions of it (merged in the order of their
    ids), and the schemas it refers to (link targets, templates, `ref=`, qualified enumerations).
    One registry reads every row once (one query) and describes any of them; `overrides` replaces or
    removes rows (None) before they are saved, so a change is checked as a whole before it is written.
    """

    def __init__(self, rows: dict[str, tuple[str, bool, str]], overrides: dict | None = None):
        self.rows = dict(rows)  # id -> (source, built_in, extends)
        for schema_id, row in (overrides or {}).items():
            if row is None:
                self.rows.pop(schema_id, None)
            else:
                self.rows[schema_id] = row
        self._described: dict[str, SchemaDescription] = {}
        self._stack: list[str] = []
        self.dependencies: dict[str, set[str]] = {}  # id -> ids its description resolved

    @classmethod
    def load(cls, *, using: str = "default", overrides: dict | None = None) -> "SchemaRegistry":
        rows = Schema.objects.using(using).values_list("namespace", "name", "source", "built_in", "extends")
        return cls({f"{ns}:{name}": (source, built_in, extends) for ns, name, source, built_in, extends in rows},
                   overrides)

    def extensions_of(self, schema_id: str) -> list[str]:
        """Ids of the extensions of `schema_id`, in merge order (sorted by id)."""
        return sorted(i for i, (_, _, extends) in self.rows.items() if extends == schema_id)

    def describe(self, schema_id: str) -> SchemaDescription:
        """The description of `schema_id` (SchemaInvalid when it does not hold, KeyError when unknown)."""
        if schema_id in self._described:
            return self._described[schema_id]
        source, built_in, extends = self.rows[schema_id]
        self._stack.append(schema_id)
        self.dependencies[schema_id] = set()
        try:
            if extends:
                description = parse_srcschema(source, builtin=built_in, resolve=self._resolve, max_bytes=_STORED)
            else:
                extensions = [self.rows[e][0] for e in self.extensions_of(schema_id)]
                description = parse_srcschema(source, builtin=built_in, resolve=self._resolve,
                                              extensions=extensions, extension_builtin=True, max_bytes=_STORED)
        finally:
            self._stack.pop()
        self._described[schema_id] = description
        return description

    def _resolve(self, schema_id: str) -> SchemaDescription | None:
        self.dependencies[self._stack[-1]].add(schema_id)
        if schema_id not in self.rows or self.rows[schema_id][2]:
            return None  # not loaded, or an extension (which describes no table of its own)
        if schema_id in self._stack:
            # A cycle of links: the target's key is all a link needs, and it does not depend on links.
            source, built_in, _ = self.rows[schema_id]
            try:
                return parse_srcschema(source, builtin=built_in, local_only=True, max_bytes=_STORED)
            except SchemaInvalid:
                return None
        try:
            return self.describe(schema_id)
        except SchemaInvalid:
            return None


def description_digest(description: SchemaDescription) -> str:
    """A digest of everything a description says (its repr is deterministic: tuples of plain values)."""
    return hashlib.sha256(repr(description).encode()).hexdigest()


# Descriptions are immutable, so one per (source, digest) serves every request of the process: each
# Ingest call loads its Schema row afresh (re-parsing was 0.2 ms of each call). The digest, rewritten
# by the services whenever an extension or a referenced schema changes, makes such a change a miss.
_DESCRIPTIONS: "OrderedDict[tuple, SchemaDescription]" = OrderedDict()
_DESCRIPTIONS_MAX = 256
_descriptions_lock = threading.Lock()


def _description_of(schema: "Schema") -> SchemaDescription:
    key = (schema.source, schema.built_in, schema.extends, schema.description_digest)
    with _descriptions_lock:
        found = _DESCRIPTIONS.get(key)
        if found is not None:
            _DESCRIPTIONS.move_to_end(key)
            return found
    registry = SchemaRegistry.load(using=schema._state.db or "default", overrides={
        schema.schema_id: (schema.source, schema.built_in, schema.extends)})
    found = registry.describe(schema.schema_id)
    with _descriptions_lock:
        _DESCRIPTIONS[key] = found
        while len(_DESCRIPTIONS) > _DESCRIPTIONS_MAX:
            _DESCRIPTIONS.popitem(last=False)
    return found


# What the write paths (Ingest, IngestExt, Write) read of a schema; `SchemaManager.find` leaves the rest deferred.
_WRITE_PATH_FIELDS = {"id", "namespace", "name", "source", "auto_stg", "built_in", "target_fingerprint",
                      "applied_fingerprint", "extends", "description_digest"}


class SchemaManager(models.Manager):
    def find(self, namespace: str, name: str) -> "Schema | None":
        """The schema `namespace:name`, or None: its row read afresh with one fixed statement.

        Every Ingest call looks its schema up, and building that query with the ORM cost ten times
        more than running it (a fifth of a one-record call's CPU). The row is never cached, so a
        change is seen by the next call; what is cached is the parse of its source
        (`_description_of`, keyed by source and description digest). Fields other than `_WRITE_PATH_FIELDS` are deferred: Django loads them
        if something reads them.
        """
        sql, field_names = _find_sql(self.db)
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql, [namespace, name])
            row = cursor.fetchone()
        return None if row is None else self.model.from_db(self.db, field_names, row)


@cache
def _find_sql(alias: str) -> tuple[str, list[str]]:
    quote = connections[alias].ops.quote_name
    fields = [f for f in Schema._meta.concrete_fields if f.attname in _WRITE_PATH_FIELDS]  # from_db wants model order
    sql = (f"SELECT {', '.join(quote(f.column) for f in fields)} FROM {quote(Schema._meta.db_table)} "
           f"WHERE {quote('namespace')} = %s AND {quote('name')} = %s")
    return sql, [f.attname for f in fields]


class StructureState(models.TextChoices):
    NEVER_APPLIED = "never", "never applied"
    NEEDS_UPDATE = "outdated", "needs update"
    UP_TO_DATE = "current", "up to date"


class Schema(models.Model):
    """A Campaign srcSchema: its source XML verbatim, what is derived from it, and its DDL state.

    The source is the truth; namespace, name, label, auto_stg and extends are copied out of it by
    `staging.services` so lists and filters need no parsing. `target_fingerprint` digests the
    structure the schema calls for (its extensions merged in), `applied_fingerprint` the one last
    applied to the databases, `description_digest` the whole description (the cache key of
    `description`, rewritten when an extension or a referenced schema changes).

    An extension schema (`extends` = "nms:recipient") owns no table: its additions are part of the
    description, tables and structure state of the schema it extends.
    """

    namespace = models.CharField(max_length=64)
    name = models.CharField(max_length=64)
    label = models.CharField(max_length=255, blank=True)
    source = models.TextField(help_text="The srcSchema XML document.")
    auto_stg = models.BooleanField("autoStg", default=False, help_text="Stage API writes in a local copy.")
    built_in = models.BooleanField(default=False)
    extends = models.CharField(max_length=130, blank=True, db_index=True,
                               help_text="For an extension schema: the schema it extends (extendedSchema).")
    description_digest = models.CharField(max_length=64, blank=True, editable=False)
    target_fingerprint = models.CharField(max_length=64, editable=False)
    applied_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    applied_structure = models.JSONField(default=dict, blank=True, editable=False)
    structure_applied_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    modified_at = models.DateTimeField(auto_now=True)
    modified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = SchemaManager()

    class Meta:
        ordering = ["namespace", "name"]
        constraints = [models.UniqueConstraint(fields=["namespace", "name"], name="staging_schema_unique_id")]
        permissions = [
            ("update_structure", "Can update the database structure of a schema"),
            ("ingest", "Can ingest records into staging (Ingest, IngestExt)"),
            ("write_cloud", "Can write records straight to cloud tables (Write, WriteCollection)"),
            ("run_sync", "Can start a staging synchronization"),
        ]

    def __str__(self) -> str:
        return self.schema_id

    @property
    def schema_id(self) -> str:
        return f"{self.namespace}:{self.name}"

    @property
    def staging_id(self) -> str | None:
        return f"{self.schema_id}Stg" if self.auto_stg else None

    @cached_property
    def description(self) -> SchemaDescription:
        """The schema's description; for a schema that has extensions, the merged one. For an extension,
        its own additions (`description.extends` names the schema they go to)."""
        return _description_of(self)

    @property
    def base(self) -> "Schema | None":
        """The schema an extension extends (None for a schema of its own, or when it is gone)."""
        if not self.extends:
            return None
        namespace, _, name = self.extends.partition(":")
        return Schema.objects.filter(namespace=namespace, name=name).first()

    @property
    def structure_state(self) -> StructureState:
        if self.extends:
            base = self.base
            return base.structure_state if base is not None else StructureState.NEVER_APPLIED
        if not self.applied_fingerprint:
            return StructureState.NEVER_APPLIED
        if self.applied_fingerprint != self.target_fingerprint:
            return StructureState.NEEDS_UPDATE
        return StructureState.UP_TO_DATE

    def applied_table(self, role: str) -> dict | None:
        """The table of `role` ("cloud" or "staging") as recorded at the last structure update."""
        return next((t for t in self.applied_structure.get("tables", []) if t["role"] == role), None)

    @property
    def desired_tables(self) -> tuple[ddl.TableSpec, ...]:
        return ddl.desired_tables(self.description)


class SyncRun(models.Model):
    """One synchronization of a schema's staged rows into its cloud table."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        ADMIN = "admin"
        API = "api"
        SOAP = "soap"
        COMMAND = "command"

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"  # every sent row synced or skipped
        PARTIAL = "partial"  # finished, but some rows failed
        FAILED = "failed"  # stopped by a run-level error; unapplied rows stay pending
        BUSY = "busy"  # another sync of the schema held the lease; nothing done

    schema = models.CharField(max_length=130, db_index=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    sent = models.PositiveIntegerField(default=0)
    inserted = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [models.Index(fields=["schema", "-started_at"], name="staging_syncrun_schema_idx")]

    def __str__(self) -> str:
        return f"{self.schema} {self.started_at:%Y-%m-%d %H:%M:%S} {self.status}"

    @property
    def duration(self):
        return (self.finished_at - self.started_at) if self.finished_at else None


class SyncLease(models.Model):
    """A named lease: at most one holder until it expires (the cross-process sync mutex)."""

    name = models.CharField(max_length=160, primary_key=True)
    holder = models.CharField(max_length=255, blank=True)
    expires_at = models.DateTimeField()


class SyncLedger(models.Model):
    """Outcomes of one applied batch, written in the CLOUD database in the same transaction as the batch.

    The cloud write and the staging bookkeeping live in two databases, so a crash between the two
    commits would otherwise leave applied rows marked pending. The next run reads these entries first
    and records their outcomes instead of applying the rows again (campaignsite.routers puts this
    model in the cloud database).
    """

    schema = models.CharField(max_length=130, db_index=True)
    outcomes = models.JSONField()  # [[seq, version, status, error], ...]
    created_at = models.DateTimeField(auto_now_add=True)


# Declared in its own module (with the services that use it) and imported so Django registers it.
from staging.soap_sessions import SoapSession  # noqa: E402, F401
from staging.idempotency import IdempotencyRecord  # noqa: E402, F401
from staging.options import Option  # noqa: E402, F401
