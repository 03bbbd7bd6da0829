from functools import cached_property

from django.conf import settings
from django.db import models

from staging import ddl
from staging.srcschema import SchemaDescription, parse_srcschema


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
        return parse_srcschema(self.source, builtin=self.built_in)

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


# Declared in its own module (with the services that use it) and imported so Django registers it.
from staging.soap_sessions import SoapSession  # noqa: E402, F401
