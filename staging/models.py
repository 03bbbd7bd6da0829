from functools import cache, cached_property, lru_cache

from django.conf import settings
from django.db import connections, models

from staging import ddl
from staging.srcschema import SchemaDescription, parse_srcschema


@lru_cache(maxsize=256)
def _description_of(source: str, built_in: bool) -> SchemaDescription:
    # Parsing is pure and its result immutable, so one parse per source serves every request of the
    # process (each Ingest call loads its Schema row afresh; re-parsing it was 0.2 ms of each call).
    return parse_srcschema(source, builtin=built_in)


# What the write paths (Ingest, IngestExt, Write) read of a schema; `SchemaManager.find` leaves the rest deferred.
_WRITE_PATH_FIELDS = {"id", "namespace", "name", "source", "auto_stg", "built_in", "target_fingerprint",
                      "applied_fingerprint"}


class SchemaManager(models.Manager):
    def find(self, namespace: str, name: str) -> "Schema | None":
        """The schema `namespace:name`, or None: its row read afresh with one fixed statement.

        Every Ingest call looks its schema up, and building that query with the ORM cost ten times
        more than running it (a fifth of a one-record call's CPU). The row is never cached, so a
        change is seen by the next call; what is cached is the parse of its source
        (`_description_of`). Fields other than `_WRITE_PATH_FIELDS` are deferred: Django loads them
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

    The source is the truth; namespace, name, label and auto_stg are copied out of it by
    `staging.services.schema_save` so lists and filters need no parsing. `target_fingerprint` digests
    the structure the source calls for, `applied_fingerprint` the one last applied to the databases.
    """

    namespace = models.CharField(max_length=64)
    name = models.CharField(max_length=64)
    label = models.CharField(max_length=255, blank=True)
    source = models.TextField(help_text="The srcSchema XML document.")
    auto_stg = models.BooleanField("autoStg", default=False, help_text="Stage API writes in a local copy.")
    built_in = models.BooleanField(default=False)
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
        return _description_of(self.source, self.built_in)

    @property
    def structure_state(self) -> StructureState:
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
    """One synchronization of a schema's staged rows into its cloud table (SPEC §5)."""

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
