"""Schemas and synchronization in the admin: configuration, thin actions, and a few custom views.

Every write goes through a service: the schema editor calls schema_create / schema_update /
schema_set_auto_stg while validating (so their errors land next to the field), the changelist applies
its autoStg toggles with schema_set_auto_stg in one transaction, all rows or none, the confirmation page
calls structure_plan then structure_update, "Sync now" queues a run with sync_enqueue (never runs
it in the request), and retry/discard call failed_rows_retry / failed_rows_discard.

Staging and cloud tables are raw tables of possibly millions of rows, browsed through the keyset
selectors of `staging.selectors` (no OFFSET, no uncapped COUNT); docs/admin.md explains the choices.
"""

import json
from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import DatabaseError, transaction
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import mark_safe

from campaignsite.errors import DomainError
from staging import charts, ddl, selectors, services, sync
from staging.forms import SchemaAutoStgListForm, SchemaSourceForm
from staging.models import Schema, StructureState, SyncRun
from staging.options import Option

UPDATE_STRUCTURE_PERMISSION = "staging.update_structure"
RUN_SYNC_PERMISSION = sync.SYNC_PERMISSION
ROWS_PER_PAGE = 100
CHART_DAYS = 7
OPERATIONS = (sync.OP_INSERT, sync.OP_INSERT_OR_UPDATE, sync.OP_UPDATE, sync.OP_DELETE)
# Friendly names of the staging bookkeeping columns, as the REST API calls them.
TECHNICAL_LABELS = {
    ddl.COL_SEQ: "seq", ddl.COL_DELETE: "delete", ddl.COL_LAST_MODIFIED: "lastModified",
    ddl.COL_OPERATION: "operation", ddl.COL_KEY: "key", ddl.COL_COLUMNS: "columns", ddl.COL_STATUS: "status",
    ddl.COL_ATTEMPTS: "attempts", ddl.COL_ERROR: "error", ddl.COL_SYNCED_AT: "syncedAt",
    ddl.COL_VERSION: "version",
}


class CappedPaginator(Paginator):
    """Counts at most `cap` rows (COUNT over a LIMITed subquery): page links stop there, the table may go on."""

    cap = 10_000

    @cached_property
    def count(self):
        return self.object_list[: self.cap].count()


def _safe_next(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                       require_https=request.is_secure()):
        return target
    return default


def key_text(table: selectors.BrowsedTable, key: tuple) -> str:
    """A row's keyset position in a URL: the bare value for one column, a JSON list for several."""
    if len(key) == 1:
        return str(key[0])
    return json.dumps([str(v) for v in key])


def key_parse(table: selectors.BrowsedTable, raw: str) -> tuple | None:
    """The inverse of `key_text`, typed by column (integers stay integers); None when it does not parse."""
    if not raw:
        return None
    try:
        parts = [raw] if len(table.order_by) == 1 else json.loads(raw)
    except ValueError:
        return None
    columns = selectors._columns_named(table, table.order_by)
    if not isinstance(parts, list) or len(parts) != len(columns):
        return None
    typed = []
    for column, part in zip(columns, parts):
        if column.kind in ("serial", "byte", "short", "long", "int64"):
            if not str(part).lstrip("-").isdigit():
                return None
            part = int(part)
        typed.append(str(part) if not isinstance(part, int) else part)
    return tuple(typed)


def _attribute_label(attribute) -> str:
    if attribute.xml_data:
        return "XML fields"
    return attribute.xpath if "/" in attribute.name or attribute.element else attribute.name


def column_headers(schema: Schema, table: selectors.BrowsedTable) -> list[dict]:
    """Each column's SQL name and what a reader calls it: the attribute name (its XPath, `location/@city`,
    for a sub-element's attribute; "XML fields" for mData), or the bookkeeping name."""
    attributes = {a.sql_name.lower(): _attribute_label(a) for a in schema.description.attributes}
    technical = {k.lower(): v for k, v in TECHNICAL_LABELS.items()}
    return [
        {"name": c.name, "label": attributes.get(c.name.lower()) or technical.get(c.name.lower(), c.name),
         "technical": c.name.lower() in technical}
        for c in table.columns
    ]


class _PageBacklog:
    """backlog_by_schema() read once per changelist request, when the first column asks for it."""

    def __init__(self):
        self._by_id = None

    def of(self, schema: Schema) -> selectors.Backlog | None:
        if self._by_id is None:
            self._by_id = {b.schema_id: b for b in selectors.backlog_by_schema()}
        return self._by_id.get(schema.schema_id)


class _ListRowRefused(Exception):
    """The service refused the autoStg change of one changelist row (rolls the whole list save back)."""

    def __init__(self, pk: int, error: DomainError):
        super().__init__(error.message)
        self.pk, self.error = pk, error


def _with_user(form_class, user):
    # Django instantiates admin forms itself, so the user travels on a per-request subclass.
    return type(form_class.__name__, (form_class,), {"user": user})


def _error_message(schema: Schema, error: DomainError) -> str:
    problems = format_html_join("", "<br>– {}", ((str(p),) for p in error.problems))
    return format_html("Schema {}: {}{}", schema, error.message, problems)


def _origin(schema: Schema, item) -> str:
    """Which document declared an attribute or link: the schema itself, or an extension of it."""
    return getattr(item, "belongs_to", None) or schema.schema_id


def ddl_segments(plan) -> list[dict]:
    """`plan.as_text()` cut into pieces, the destructive statements flagged for highlighting."""
    text = plan.as_text()
    segments, position = [], 0
    for statement in plan.destructive:
        sql = statement.sql + ";"
        start = text.find(sql, position)
        if start < 0:
            continue
        segments.append({"text": text[position:start], "destructive": False})
        segments.append({"text": sql, "destructive": True})
        position = start + len(sql)
    segments.append({"text": text[position:], "destructive": False})
    return [s for s in segments if s["text"]]


@admin.register(Schema)
class SchemaAdmin(admin.ModelAdmin):
    form = SchemaSourceForm
    list_display = ("schema_id", "label", "auto_stg", "structure", "built_in", "modified_at")
    list_display_links = ("schema_id",)
    list_editable = ("auto_stg",)
    list_filter = ("auto_stg", "built_in", "namespace")
    search_fields = ("namespace", "name", "label")
    actions = ("update_structure", "sync_now", "enable_staging", "disable_staging")
    readonly_fields = (
        "schema_id", "label", "extension_of", "extended_by", "sql_table", "staging_table", "attributes_table",
        "xml_fields_table", "links_table", "keys", "structure", "structure_applied_at", "built_in", "modified_at",
        "modified_by",
    )
    change_form_template = "admin/staging/schema/change_form.html"

    class Media:
        css = {"all": ("staging/admin.css",)}

    # --- Forms ----------------------------------------------------------------------------

    def get_fieldsets(self, request, obj=None):
        editor = (None, {"fields": ("source", "auto_stg")})
        if obj is None:
            return (editor,)
        return (
            editor,
            ("Parsed from the source", {"fields": (
                "schema_id", "label", "extension_of", "extended_by", "sql_table", "staging_table",
                "attributes_table", "xml_fields_table", "links_table", "keys",
            )}),
            ("Database structure", {"fields": ("structure", "structure_applied_at")}),
            ("History", {"fields": ("built_in", "modified_at", "modified_by")}),
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        schema = self.get_object(request, object_id)
        extra = {"schema_warnings": schema.description.warnings if schema is not None else ()}
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def get_form(self, request, obj=None, **kwargs):
        return _with_user(super().get_form(request, obj, **kwargs), request.user)

    def get_changelist_form(self, request, **kwargs):
        form = _with_user(SchemaAutoStgListForm, request.user)
        form.refusals = getattr(request, "_staging_list_refusals", {})
        return form

    def changelist_view(self, request, extra_context=None):
        """The list, whose autoStg toggles are saved all or none.

        Django saves the changed rows of a valid list inside one transaction (save_model, then
        log_change for each). A row the service refuses raises `_ListRowRefused` out of it, which rolls
        every row back; the list is then validated again with the refusal on that row, so it is shown
        as a form error and nothing is saved.
        """
        request._staging_reminders = []
        try:
            response = super().changelist_view(request, extra_context)
        except _ListRowRefused as refused:
            request._staging_list_refusals = {refused.pk: refused.error}
            request._staging_reminders = []
            return super().changelist_view(request, extra_context)
        for schema in request._staging_reminders:
            self._remind_structure(request, schema)
        return response

    def save_model(self, request, obj, form, change):
        if isinstance(form, SchemaAutoStgListForm):
            # `obj` already carries the ticked value (form validation wrote it): give the service the stored row.
            try:
                schema = services.schema_set_auto_stg(schema=Schema.objects.get(pk=obj.pk),
                                                      enabled=form.cleaned_data["auto_stg"], user=request.user)
            except DomainError as error:
                raise _ListRowRefused(obj.pk, error) from None
            request._staging_reminders.append(schema)
            return
        # The editor already saved through the services while it was validated (staging.forms).
        for warning in obj.description.warnings:
            messages.warning(request, f"Schema {obj}: {warning}")
        self._remind_structure(request, obj)

    def _remind_structure(self, request, schema: Schema) -> None:
        if schema.structure_state != StructureState.UP_TO_DATE:
            messages.info(request, f"The database structure of {schema} is not up to date: use "
                                   "“Update database structure” to apply the source.")

    # --- Permissions ----------------------------------------------------------------------

    def has_delete_permission(self, request, obj=None):
        # Built-in schemas ship with the product: editable, never deleted.
        if obj is not None and obj.built_in:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        services.schema_delete(schema=obj, user=request.user)

    def delete_queryset(self, request, queryset):
        for schema in queryset:
            try:
                services.schema_delete(schema=schema, user=request.user)
            except DomainError as exc:
                self.message_user(request, exc.detail, messages.ERROR)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except DomainError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            return redirect("admin:staging_schema_change", object_id)

    def has_update_structure_permission(self, request):
        return request.user.has_perm(UPDATE_STRUCTURE_PERMISSION)

    def has_run_sync_permission(self, request):
        return request.user.has_perm(RUN_SYNC_PERMISSION)

    # --- Sync columns of the list: one backlog read per page, not per row -----------------

    def get_list_display(self, request):
        backlog = _PageBacklog()

        @admin.display(description="pending")
        def pending(obj):
            found = backlog.of(obj)
            return "—" if found is None or found.pending is None else found.pending

        @admin.display(description="failed")
        def failed(obj):
            found = backlog.of(obj)
            if found is None or not found.failed:
                return "—" if found is None or found.failed is None else 0
            url = reverse("admin:staging_schema_staged", args=[obj.pk])
            return format_html('<a class="staging-failed" href="{}?status=failed">{}</a>', url, found.failed)

        @admin.display(description="last sync")
        def last_sync(obj):
            found = backlog.of(obj)
            run = found.last_run if found else None
            if run is None:
                return "—"
            return format_html('<a href="{}">{}</a> <span class="staging-badge staging-badge--{}">{}</span>',
                               reverse("admin:staging_syncrun_change", args=[run.pk]),
                               timezone.localtime(run.started_at).strftime("%Y-%m-%d %H:%M"), run.status,
                               run.status)

        @admin.display(description="data")
        def data(obj):
            links = []
            if obj.auto_stg and obj.applied_table("staging"):
                links.append(format_html('<a href="{}">staged</a>',
                                         reverse("admin:staging_schema_staged", args=[obj.pk])))
            if obj.applied_table("cloud"):
                links.append(format_html('<a href="{}">cloud</a>',
                                         reverse("admin:staging_schema_cloud", args=[obj.pk])))
            return format_html_join(" · ", "{}", ((link,) for link in links)) or "—"

        return (*self.list_display, pending, failed, last_sync, data)

    # --- Columns and read-only fields ----------------------------------------------------

    @admin.display(description="id", ordering="namespace")
    def schema_id(self, obj: Schema) -> str:
        return obj.schema_id

    @admin.display(description="structure")
    def structure(self, obj: Schema) -> str:
        state = obj.structure_state
        return format_html('<span class="staging-badge staging-badge--{}">{}</span>', state.value, state.label)

    @admin.display(description="extends")
    def extension_of(self, obj: Schema) -> str:
        if not obj.extends:
            return "—"
        base = obj.base
        if base is None:
            return format_html("{} (not loaded)", obj.extends)
        return format_html('<a href="{}" class="staging-base-link">{}</a> — this extension owns no table: its '
                           "fields are columns of the tables of {}, and the table browsers and structure update "
                           "are those of {}.", reverse("admin:staging_schema_change", args=[base.pk]), base,
                           base, base)

    @admin.display(description="extensions")
    def extended_by(self, obj: Schema) -> str:
        ids = obj.description.extensions
        if not ids:
            return "—"
        found = {s.schema_id: s for s in Schema.objects.filter(extends=obj.schema_id)}
        return format_html_join(", ", "{}", (
            (format_html('<a href="{}" class="staging-extension-link">{}</a>',
                         reverse("admin:staging_schema_change", args=[found[i].pk]), i) if i in found else i,)
            for i in ids))

    @admin.display(description="SQL table")
    def sql_table(self, obj: Schema) -> str:
        description = obj.description
        if obj.extends:
            base = obj.base
            return f"{base.description.sql_table if base else '—'} (the table of {obj.extends})"
        if description.view:
            return f"{description.sql_table} (view: an existing table, never created, altered or dropped)"
        if not description.primary_key:
            return f"{description.sql_table} (no primary key)"
        return description.sql_table

    @admin.display(description="staging table")
    def staging_table(self, obj: Schema) -> str:
        if obj.extends:
            base = obj.base
            if base is None or not base.auto_stg:
                return f"— (none: {obj.extends} is not staged)"
            return f"{base.description.staging_table} (the staging table of {obj.extends}, local database)"
        if not obj.auto_stg:
            return "— (autoStg is off)"
        return f"{obj.description.staging_table} (schema {obj.staging_id}, local database)"

    @admin.display(description="attributes")
    def attributes_table(self, obj: Schema) -> str:
        rows = format_html_join(
            "",
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            (
                (a.xpath, a.type, a.length if a.length is not None else "", a.sql_name, "yes" if a.not_null else "",
                 _origin(obj, a))
                for a in obj.description.attributes
            ),
        )
        return format_html(
            '<table class="staging-attributes"><thead><tr><th>xpath</th><th>type</th><th>length</th>'
            "<th>SQL column</th><th>notNull</th><th>origin</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="XML fields")
    def xml_fields_table(self, obj: Schema) -> str:
        fields = obj.description.xml_fields
        if not fields:
            return "—"
        rows = format_html_join("", "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                                ((f.xpath, f.type, _origin(obj, f)) for f in fields))
        return format_html(
            '<p class="help">Stored together in the <code>mData</code> column, as one XML document.</p>'
            '<table class="staging-attributes staging-xml-fields"><thead><tr><th>xpath</th><th>type</th>'
            "<th>origin</th></tr></thead><tbody>{}</tbody></table>", rows)

    @admin.display(description="links")
    def links_table(self, obj: Schema) -> str:
        links = obj.description.links
        if not links:
            return "—"
        rows = format_html_join(
            "", "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (link.name, link.target, "collection (no column)" if link.unbound else "1",
                 ", ".join(f"{source} → {target}" for source, target in link.joins) or "—",
                 ", ".join(f"{label}={value}" for label, value in (
                     ("integrity", link.integrity), ("revLink", link.rev_link),
                     ("revIntegrity", link.rev_integrity), ("externalJoin", "true" if link.external_join else None),
                 ) if value) or "—",
                 _origin(obj, link))
                for link in links
            ),
        )
        return format_html(
            '<table class="staging-attributes staging-links"><thead><tr><th>name</th><th>target</th>'
            "<th>cardinality</th><th>foreign key → target</th><th>options</th><th>origin</th></tr></thead>"
            "<tbody>{}</tbody></table>", rows)

    @admin.display(description="keys")
    def keys(self, obj: Schema) -> str:
        description = obj.description
        xpaths = {a.name: a.xpath for a in description.attributes}
        lines = [("primary key", ", ".join(xpaths.get(n, n) for n in description.primary_key)
                  or "— (none: the table has no primary key)", "")]
        lines += [
            (key.name, ", ".join(xpaths.get(n, n) for n in key.fields), " (internal)" if key.internal else "")
            for key in description.keys
        ]
        return format_html_join(mark_safe("<br>"), "{}: {}{}", lines)

    # --- Actions --------------------------------------------------------------------------

    @admin.action(description="Update database structure", permissions=["update_structure"])
    def update_structure(self, request, queryset):
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
        return HttpResponseRedirect(f"{reverse('admin:staging_schema_structure')}?ids={ids}")

    @admin.action(description="Sync now (queue a synchronization)", permissions=["run_sync"])
    def sync_now(self, request, queryset):
        for schema in queryset:
            self._enqueue(request, schema)

    def _enqueue(self, request, schema: Schema) -> None:
        try:
            task = sync.sync_enqueue(schema=schema.schema_id, trigger=SyncRun.Trigger.ADMIN, user=request.user)
        except DomainError as error:
            messages.error(request, _error_message(schema, error))
            return
        runs = reverse("admin:staging_syncrun_changelist")
        messages.success(request, format_html(
            "Synchronization of {} queued ({}); it appears in <a href=\"{}?schema={}\">Sync runs</a> when a "
            "worker starts it.", schema, task, runs, schema.schema_id))

    @admin.action(description="Enable staging (autoStg)", permissions=["change"])
    def enable_staging(self, request, queryset):
        self._set_auto_stg(request, queryset, enabled=True)

    @admin.action(description="Disable staging (autoStg)", permissions=["change"])
    def disable_staging(self, request, queryset):
        self._set_auto_stg(request, queryset, enabled=False)

    def _set_auto_stg(self, request, queryset, *, enabled: bool) -> None:
        changed = []
        for schema in queryset:
            try:
                if schema.auto_stg != enabled:
                    services.schema_set_auto_stg(schema=schema, enabled=enabled, user=request.user)
                    changed.append(schema.schema_id)
            except DomainError as error:
                messages.error(request, _error_message(schema, error))
        if changed:
            verb = "enabled" if enabled else "disabled"
            messages.success(request, f"Staging {verb} for {', '.join(changed)}. Update the database structure "
                                      f"to {'create' if enabled else 'drop'} the staging table.")

    # --- Structure update confirmation ----------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("structure/", view(self.structure_view), name="staging_schema_structure"),
            path("<int:pk>/sync/", view(self.sync_view), name="staging_schema_sync"),
            path("<int:pk>/staged/", view(self.staged_view), name="staging_schema_staged"),
            path("<int:pk>/staged/failed/", view(self.failed_view), name="staging_schema_failed"),
            path("<int:pk>/staged/<int:seq>/", view(self.staged_row_view), name="staging_schema_staged_row"),
            path("<int:pk>/cloud/", view(self.cloud_view), name="staging_schema_cloud"),
            path("<int:pk>/cloud/row/", view(self.cloud_row_view), name="staging_schema_cloud_row"),
            *super().get_urls(),
        ]

    def structure_view(self, request):
        """Show the DDL of the selected schemas; on POST, apply it (destructive plans need the box ticked)."""
        if not self.has_update_structure_permission(request):
            raise PermissionDenied
        changelist_url = reverse("admin:staging_schema_changelist")
        raw_ids = (request.POST if request.method == "POST" else request.GET).get("ids", "")
        ids = [int(part) for part in raw_ids.split(",") if part.strip().isdigit()]
        schemas = list(Schema.objects.filter(pk__in=ids))
        if not schemas:
            messages.warning(request, "Select at least one schema to update its database structure.")
            return HttpResponseRedirect(changelist_url)

        # An extension owns no table: its structure update is that of the schema it extends, planned once
        # even when the extension and its base are both selected.
        owners, via = {}, {}
        for schema in schemas:
            try:
                owner = services.structure_owner(schema)
            except DomainError as exc:
                messages.error(request, _error_message(schema, exc))
                continue
            owners.setdefault(owner.pk, owner)
            if owner.pk != schema.pk:
                via.setdefault(owner.pk, []).append(schema.schema_id)
        if not owners:
            return HttpResponseRedirect(changelist_url)
        plans = [(owner, services.structure_plan(schema=owner)) for owner in owners.values()]
        destructive = any(plan.destructive for _, plan in plans)
        confirmed = request.POST.get("confirm_destructive") == "on"
        error = None
        if request.method == "POST":
            if destructive and not confirmed:
                error = "Tick “I understand this drops columns / changes types” to apply destructive statements."
            else:
                for schema, _ in plans:
                    self._apply_structure(request, schema, confirmed)
                if len(schemas) == 1:
                    return HttpResponseRedirect(reverse("admin:staging_schema_change", args=[schemas[0].pk]))
                return HttpResponseRedirect(changelist_url)

        context = {
            **self.admin_site.each_context(request),
            "title": "Update database structure",
            "opts": self.opts,
            "media": self.media,
            "ids": ",".join(str(s.pk) for s in schemas),
            "items": [
                {"schema": schema, "plan": plan, "segments": ddl_segments(plan), "state": schema.structure_state,
                 "via": via.get(schema.pk, [])}
                for schema, plan in plans
            ],
            "destructive": destructive,
            "error": error,
            "changelist_url": changelist_url,
        }
        return TemplateResponse(request, "admin/staging/schema/structure_confirmation.html", context)

    def _apply_structure(self, request, schema: Schema, confirmed: bool) -> None:
        try:
            plan = services.structure_update(schema=schema, confirm_destructive=confirmed, user=request.user)
        except DomainError as error:
            messages.error(request, _error_message(schema, error))
            return
        if plan.is_empty:
            messages.info(request, f"Schema {schema}: the database structure was already up to date.")
        else:
            messages.success(request, f"Schema {schema}: database structure updated ({len(plan.statements)} statement(s)).")

    # --- Sync now (change page, staged browser, dashboard) ---------------------------------

    def sync_view(self, request, pk):
        """POST: queue a synchronization of this schema, then go back where the button was."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_run_sync_permission(request):
            raise PermissionDenied
        schema = get_object_or_404(Schema, pk=pk)
        self._enqueue(request, schema)
        return HttpResponseRedirect(_safe_next(request, reverse("admin:staging_schema_change", args=[pk])))

    # --- Staged-data and cloud-data browsers --------------------------------------------------

    def _viewable_schema(self, request, pk) -> Schema:
        schema = get_object_or_404(Schema, pk=pk)
        if not self.has_view_permission(request, schema):
            raise PermissionDenied
        return schema

    def _page_context(self, request, schema: Schema, title: str, **extra) -> dict:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "media": self.media,
            "schema": schema,
            "change_url": reverse("admin:staging_schema_change", args=[schema.pk]),
            "staged_url": reverse("admin:staging_schema_staged", args=[schema.pk]),
            "cloud_url": reverse("admin:staging_schema_cloud", args=[schema.pk]),
            "can_sync": self.has_run_sync_permission(request),
            **extra,
        }

    def _listing(self, request, schema: Schema, table, *, filters: dict, newest_first: bool, row_url) -> dict:
        """The page of rows the query string asks for: a key search, or a keyset page with a capped count."""
        query = request.GET.get("q", "").strip()
        error = None
        if query:
            try:
                lookups = selectors.key_lookups(schema.description, query)
            except DomainError as exc:
                error, lookups = exc, []
            page = selectors.table_lookup(table, lookups=lookups, filters=filters, descending=newest_first,
                                          limit=ROWS_PER_PAGE)
            count, capped = len(page.rows), False
        else:
            after = key_parse(table, request.GET.get("after", ""))
            before = key_parse(table, request.GET.get("before", ""))
            if not table.pageable:
                after = before = None
            page = selectors.table_page(table, filters=filters, descending=newest_first, after=after, before=before,
                                        limit=ROWS_PER_PAGE)
            count, capped = selectors.table_count_capped(table, filters=filters)
        kept = {k: v for k, v in request.GET.items() if k not in ("after", "before") and v}
        headers = column_headers(schema, table)
        status_index = next((i for i, c in enumerate(table.columns) if c.name == ddl.COL_STATUS), None)
        rows = [
            {
                "key": key_text(table, key),
                "url": row_url(key) if table.pageable else None,
                "status": row[status_index] if status_index is not None else None,
                "cells": list(zip(headers, row)),
            }
            for key, row in zip(page.keys, page.rows)
        ]
        return {
            "table": table,
            "headers": headers,
            "rows": rows,
            "query": query,
            "search_error": error,
            "count": count,
            "capped": capped,
            "estimate": None if filters or query else selectors.table_size_estimate(table),
            "next_url": (f"?{urlencode({**kept, 'after': key_text(table, page.last_key)})}"
                         if page.has_next and table.pageable else None),
            "previous_url": (f"?{urlencode({**kept, 'before': key_text(table, page.first_key)})}"
                             if page.has_previous and table.pageable else None),
            "first_url": f"?{urlencode(kept)}" if page.has_previous and table.pageable else None,
            "keyless": not table.pageable,
            "key_help": selectors.key_help(schema.description),
        }

    def _extension_redirect(self, request, schema: Schema, name: str):
        """An extension's rows are those of the schema it extends: its browsers are the base's."""
        base = schema.base if schema.extends else None
        if base is None:
            return None
        query = request.GET.urlencode()
        return HttpResponseRedirect(reverse(name, args=[base.pk]) + (f"?{query}" if query else ""))

    def staged_view(self, request, pk):
        """The staging rows of a schema, newest first by default, filtered by status and operation."""
        schema = self._viewable_schema(request, pk)
        redirect_to_base = self._extension_redirect(request, schema, "admin:staging_schema_staged")
        if redirect_to_base is not None:
            return redirect_to_base
        table = selectors.browsed_table(schema, "staging") if schema.auto_stg else None
        context = self._page_context(request, schema, f"Staged data: {schema.schema_id}Stg", kind="staged")
        if table is None:
            if schema.description.view:
                context["missing"] = f"{schema.schema_id} is a view: views have no staging."
            else:
                context["missing"] = (f"{schema.schema_id} has no staging table: turn staging (autoStg) on and "
                                      "update the database structure.")
            return TemplateResponse(request, "admin/staging/schema/browser.html", context)
        status = request.GET.get("status")
        status = status if status in selectors.STAGED_STATUSES else None
        operation = request.GET.get("operation")
        operation = operation if operation in OPERATIONS else None
        newest_first = request.GET.get("order") != "old"
        filters = {}
        if status:  # served by the (sStgStatus, iStgSeq) index
            filters[ddl.COL_STATUS] = status
        if operation:
            filters[ddl.COL_OPERATION] = operation
        context.update(self._listing(
            request, schema, table, filters=filters, newest_first=newest_first,
            row_url=lambda key: reverse("admin:staging_schema_staged_row", args=[schema.pk, key[0]]),
        ))
        context.update({
            "status": status, "operation": operation, "newest_first": newest_first,
            "statuses": selectors.STAGED_STATUSES, "operations": OPERATIONS,
            "failed_url": reverse("admin:staging_schema_failed", args=[schema.pk]),
            "sync_url": reverse("admin:staging_schema_sync", args=[schema.pk]),
        })
        return TemplateResponse(request, "admin/staging/schema/browser.html", context)

    def staged_row_view(self, request, pk, seq):
        schema = self._viewable_schema(request, pk)
        table = selectors.browsed_table(schema, "staging") if schema.auto_stg else None
        row = selectors.table_row(table, key=(seq,)) if table else None
        if row is None:
            raise Http404(f"No staged row {seq} in {schema.schema_id}Stg.")
        context = self._page_context(request, schema, f"{schema.schema_id}Stg row {seq}", kind="staged",
                                     fields=self._fields(schema, table, row))
        cloud = selectors.browsed_table(schema, "cloud")
        pk_values = tuple(row.get(c) for c in (cloud.order_by if cloud else ()))
        if cloud and cloud.pageable and all(v is not None for v in pk_values):
            context["other_url"] = (reverse("admin:staging_schema_cloud_row", args=[schema.pk])
                                    + "?" + urlencode({"key": key_text(cloud, pk_values)}))
            context["other_label"] = "This record in the cloud table"
        context["status"] = row.get(ddl.COL_STATUS)
        context["seq"] = seq
        context["failed_url"] = reverse("admin:staging_schema_failed", args=[schema.pk])
        return TemplateResponse(request, "admin/staging/schema/row.html", context)

    def cloud_view(self, request, pk):
        """The cloud table of a schema, read-only, in primary-key order."""
        schema = self._viewable_schema(request, pk)
        redirect_to_base = self._extension_redirect(request, schema, "admin:staging_schema_cloud")
        if redirect_to_base is not None:
            return redirect_to_base
        table = selectors.browsed_table(schema, "cloud")
        context = self._page_context(request, schema, f"Cloud data: {schema.description.sql_table}", kind="cloud")
        if table is None:
            context["missing"] = f"The table of {schema.schema_id} does not exist yet: update the database structure."
            return TemplateResponse(request, "admin/staging/schema/browser.html", context)
        row_base = reverse("admin:staging_schema_cloud_row", args=[schema.pk])
        try:
            # A savepoint: on PostgreSQL a refused SELECT would otherwise spoil an enclosing transaction.
            with transaction.atomic(using=table.alias):
                listing = self._listing(
                    request, schema, table, filters={}, newest_first=False,
                    row_url=lambda key: f"{row_base}?{urlencode({'key': key_text(table, key)})}",
                )
            context.update(listing)
        except DatabaseError as error:
            if not schema.description.view:
                raise
            # The table a view maps is not ours: it may be missing or differ from the source.
            context["missing"] = (f"The view {schema.schema_id} could not read {table.name}: "
                                  f"{str(error).strip().splitlines()[0] if str(error).strip() else error!r}")
        context["view"] = schema.description.view
        return TemplateResponse(request, "admin/staging/schema/browser.html", context)

    def cloud_row_view(self, request, pk):
        schema = self._viewable_schema(request, pk)
        table = selectors.browsed_table(schema, "cloud")
        key = key_parse(table, request.GET.get("key", "")) if table and table.pageable else None
        row = selectors.table_row(table, key=key) if key else None
        if row is None:
            raise Http404(f"No such record in {schema.description.sql_table}.")
        context = self._page_context(request, schema, f"{schema.description.sql_table} record", kind="cloud",
                                     fields=self._fields(schema, table, row))
        if schema.auto_stg and schema.applied_table("staging") and len(key) == 1:
            context["other_url"] = reverse("admin:staging_schema_staged", args=[schema.pk]) + "?" + urlencode(
                {"q": key[0]})
            context["other_label"] = "Staged rows of this record"
        return TemplateResponse(request, "admin/staging/schema/row.html", context)

    @staticmethod
    def _fields(schema: Schema, table, row: dict) -> list[tuple[dict, object]]:
        return [(header, row[header["name"]]) for header in column_headers(schema, table)]

    # --- Retry / discard failed rows (confirmation page) --------------------------------------

    def failed_view(self, request, pk):
        """POST from the staged browser: show what retry/discard would change; with confirm=yes, do it."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_run_sync_permission(request):
            raise PermissionDenied
        schema = self._viewable_schema(request, pk)
        browser_url = reverse("admin:staging_schema_staged", args=[schema.pk])
        back = _safe_next(request, browser_url)
        table = selectors.browsed_table(schema, "staging") if schema.auto_stg else None
        action = request.POST.get("action")
        everything = request.POST.get("scope") == "all"
        seqs = sorted({int(v) for v in request.POST.getlist("seq") if v.isdigit()})
        if table is None or action not in ("retry", "discard"):
            messages.warning(request, "Choose “Retry failed” or “Discard failed”.")
            return HttpResponseRedirect(back)
        if not everything and not seqs:
            messages.warning(request, "Select rows, or choose “all failed rows”.")
            return HttpResponseRedirect(back)
        chosen = None if everything else seqs
        if request.POST.get("confirm") == "yes":
            service = sync.failed_rows_retry if action == "retry" else sync.failed_rows_discard
            try:
                changed = service(schema=schema, seqs=chosen, user=request.user)
            except DomainError as error:
                messages.error(request, _error_message(schema, error))
                return HttpResponseRedirect(back)
            done = "made pending again (the next sync applies them)" if action == "retry" else "deleted"
            messages.success(request, f"Schema {schema}: {changed} failed row(s) {done}.")
            return HttpResponseRedirect(back)
        count, capped = selectors.table_count_capped(table, filters={ddl.COL_STATUS: ddl.STATUS_FAILED}, seqs=chosen)
        context = self._page_context(
            request, schema, "Retry failed rows" if action == "retry" else "Discard failed rows", kind="staged",
            action=action, everything=everything, seqs=seqs, count=count, capped=capped, next=back,
            ignored=0 if everything else len(seqs) - count,
        )
        return TemplateResponse(request, "admin/staging/schema/failed_confirmation.html", context)


# --- Sync runs -------------------------------------------------------------------------------


class SchemaIdFilter(admin.SimpleListFilter):
    """Schemas from the (small) schema table, not a DISTINCT over every run ever recorded."""

    title = "schema"
    parameter_name = "schema"

    def lookups(self, request, model_admin):
        return [(s.schema_id, s.schema_id) for s in Schema.objects.order_by("namespace", "name")]

    def queryset(self, request, queryset):
        return queryset.filter(schema=self.value()) if self.value() else queryset


class ReadOnlyAdmin(admin.ModelAdmin):
    """An audit or log: listed and shown, never added, changed or deleted by hand; no COUNT(*) over a big
    table on every page."""

    show_full_result_count = False
    list_per_page = 100

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    """The sync audit: read-only, newest first; an index on (schema, started_at) serves the filters."""

    list_display = ("started_at", "schema", "trigger", "status_badge", "duration_text", "sent", "inserted",
                    "updated", "deleted", "skipped", "failed")
    list_display_links = ("started_at",)
    list_filter = (SchemaIdFilter, "status", "trigger")
    date_hierarchy = "started_at"
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedPaginator
    fields = ("schema", "trigger", "status_badge", "started_at", "finished_at", "duration_text", "sent",
              "inserted", "updated", "deleted", "skipped", "failed", "error")
    readonly_fields = fields

    class Media:
        css = {"all": ("staging/admin.css",)}

    def changelist_view(self, request, extra_context=None):
        sync.sync_runs_close_lost()  # a killed worker's run shows failed here too, not running
        return super().changelist_view(request, extra_context)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: SyncRun) -> str:
        return format_html('<span class="staging-badge staging-badge--{}">{}</span>', obj.status, obj.status)

    @admin.display(description="duration")
    def duration_text(self, obj: SyncRun) -> str:
        duration = obj.duration
        if duration is None:
            return "—"
        seconds = duration.total_seconds()
        return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {int(seconds % 60)} s"


@admin.register(Option)
class OptionAdmin(admin.ModelAdmin):
    """Campaign options (what xtk:session#GetOption reads): a small configuration table, edited by hand.

    Django's own permissions decide who may edit them; `staging.change_option` is also what a SOAP
    Write of an xtk:option document needs.
    """

    list_display = ("name", "data_type", "raw_value", "description", "modified_at")
    list_filter = ("data_type",)
    search_fields = ("name",)
    fieldsets = (
        (None, {"fields": ("name", "data_type", "description")}),
        ("Value (fill the field of the option's type)",
         {"fields": ("string_value", "long_value", "double_value", "timestamp_value", "memo_value")}),
    )

    @admin.display(description="value")
    def raw_value(self, obj: Option) -> str:
        return obj.raw_value


# --- Dashboard -------------------------------------------------------------------------------


def _run_bar(run: SyncRun) -> charts.Bar:
    started = timezone.localtime(run.started_at)
    return charts.Bar(
        value=run.sent,
        part=run.failed,
        group=started.strftime("%a %d"),
        label=(f"{run.schema} {started:%Y-%m-%d %H:%M} {run.status}: {run.sent} sent, {run.inserted} inserted, "
               f"{run.updated} updated, {run.deleted} deleted, {run.skipped} skipped, {run.failed} failed"),
        href=reverse("admin:staging_syncrun_change", args=[run.pk]),
    )


def dashboard_view(request):
    """Backlog per staged schema, last and next runs, and rows synced per run over the last days.

    The backlog is `backlog_by_schema()`, the same selector `manage.py staging_status` prints.
    Mounted at /admin/staging/dashboard/ by campaignsite/urls.py, wrapped in admin_view.
    """
    if not (request.user.has_perm("staging.view_syncrun") or request.user.has_perm("staging.view_schema")):
        raise PermissionDenied
    schemas = {s.schema_id: s for s in Schema.objects.filter(auto_stg=True)}
    can_sync = request.user.has_perm(RUN_SYNC_PERMISSION)
    backlog = [
        {
            "item": item,
            "schema": schemas.get(item.schema_id),
            "staged_url": reverse("admin:staging_schema_staged", args=[schemas[item.schema_id].pk]),
            "sync_url": reverse("admin:staging_schema_sync", args=[schemas[item.schema_id].pk]),
            "syncable": item.schema_id not in sync.PROCESSED_ELSEWHERE,
        }
        for item in selectors.backlog_by_schema()
        if item.schema_id in schemas
    ]
    since = timezone.now() - timedelta(days=CHART_DAYS)
    runs = selectors.sync_runs_since(since=since, with_rows_only=True)
    chart = charts.bar_chart_svg(
        [_run_bar(run) for run in runs],
        title=f"Rows sent per synchronization run, last {CHART_DAYS} days (failed rows in red)",
        empty_text=f"No run moved any row in the last {CHART_DAYS} days.",
    )
    context = {
        **admin.site.each_context(request),
        "title": "Synchronization dashboard",
        "backlog": backlog,
        "next_run": selectors.next_sync_time(),
        "chart": mark_safe(chart),  # built by staging.charts, which escapes every text it writes
        "chart_days": CHART_DAYS,
        "chart_runs": len(runs),
        "chart_rows": sum(run.sent for run in runs),
        "can_sync": can_sync,
        "runs_url": reverse("admin:staging_syncrun_changelist"),
        "schedules_url": reverse("admin:django_q_schedule_changelist"),
        "next": request.get_full_path(),
    }
    return TemplateResponse(request, "admin/staging/dashboard.html", context)


# The admin index and the Staging app page link the dashboard (admin/staging/index.html adds the box).
admin.site.index_template = "admin/staging/index.html"
