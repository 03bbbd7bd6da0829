"""Schemas in the admin: configuration, thin actions, and the structure-update confirmation page.

Every write goes through `staging.services`: the forms call schema_create / schema_update /
schema_set_auto_stg while validating (so their errors land next to the field), and the
confirmation page calls structure_plan then structure_update.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from campaignsite.errors import DomainError
from staging import services
from staging.forms import SchemaAutoStgListForm, SchemaSourceForm
from staging.models import Schema, StructureState

UPDATE_STRUCTURE_PERMISSION = "staging.update_structure"


def _with_user(form_class, user):
    # Django instantiates admin forms itself, so the user travels on a per-request subclass.
    return type(form_class.__name__, (form_class,), {"user": user})


def _error_message(schema: Schema, error: DomainError) -> str:
    problems = format_html_join("", "<br>– {}", ((str(p),) for p in error.problems))
    return format_html("{}: {}{}", schema, error.message, problems)


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
    actions = ("update_structure", "enable_staging", "disable_staging")
    readonly_fields = (
        "schema_id", "label", "sql_table", "staging_table", "attributes_table", "keys", "structure",
        "structure_applied_at", "built_in", "modified_at", "modified_by",
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
                "schema_id", "label", "sql_table", "staging_table", "attributes_table", "keys",
            )}),
            ("Database structure", {"fields": ("structure", "structure_applied_at")}),
            ("History", {"fields": ("built_in", "modified_at", "modified_by")}),
        )

    def get_form(self, request, obj=None, **kwargs):
        return _with_user(super().get_form(request, obj, **kwargs), request.user)

    def get_changelist_form(self, request, **kwargs):
        return _with_user(SchemaAutoStgListForm, request.user)

    def save_model(self, request, obj, form, change):
        # The form already saved through the services while it was validated (staging.forms).
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

    def has_update_structure_permission(self, request):
        return request.user.has_perm(UPDATE_STRUCTURE_PERMISSION)

    # --- Columns and read-only fields ----------------------------------------------------

    @admin.display(description="id", ordering="namespace")
    def schema_id(self, obj: Schema) -> str:
        return obj.schema_id

    @admin.display(description="structure")
    def structure(self, obj: Schema) -> str:
        state = obj.structure_state
        return format_html('<span class="staging-badge staging-badge--{}">{}</span>', state.value, state.label)

    @admin.display(description="SQL table")
    def sql_table(self, obj: Schema) -> str:
        return obj.description.sql_table

    @admin.display(description="staging table")
    def staging_table(self, obj: Schema) -> str:
        if not obj.auto_stg:
            return "— (autoStg is off)"
        return f"{obj.description.staging_table} (schema {obj.staging_id}, local database)"

    @admin.display(description="attributes")
    def attributes_table(self, obj: Schema) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            (
                (a.name, a.type, a.length if a.length is not None else "", a.sql_name, "yes" if a.not_null else "")
                for a in obj.description.attributes
            ),
        )
        return format_html(
            '<table class="staging-attributes"><thead><tr><th>name</th><th>type</th><th>length</th>'
            "<th>SQL column</th><th>notNull</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="keys")
    def keys(self, obj: Schema) -> str:
        description = obj.description
        lines = [("primary key", ", ".join(f"@{n}" for n in description.primary_key) or "—", "")]
        lines += [
            (key.name, ", ".join(f"@{n}" for n in key.fields), " (internal)" if key.internal else "")
            for key in description.keys
        ]
        return format_html_join(mark_safe("<br>"), "{}: {}{}", lines)

    # --- Actions --------------------------------------------------------------------------

    @admin.action(description="Update database structure", permissions=["update_structure"])
    def update_structure(self, request, queryset):
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
        return HttpResponseRedirect(f"{reverse('admin:staging_schema_structure')}?ids={ids}")

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
        view = self.admin_site.admin_view(self.structure_view)
        return [path("structure/", view, name="staging_schema_structure"), *super().get_urls()]

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

        plans = [(schema, services.structure_plan(schema=schema)) for schema in schemas]
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
                {"schema": schema, "plan": plan, "segments": ddl_segments(plan), "state": schema.structure_state}
                for schema, plan in plans
            ],
            "destructive": destructive,
            "error": error,
            "changelist_url": changelist_url,
        }
        return TemplateResponse(request, "admin/staging/schema/structure_confirmation.html", context)

    def _apply_structure(self, request, schema: Schema, confirmed: bool) -> None:
        try:
            plan = services.structure_update(schema=schema, confirm_destructive=confirmed)
        except DomainError as error:
            messages.error(request, _error_message(schema, error))
            return
        if plan.is_empty:
            messages.info(request, f"{schema}: the database structure was already up to date.")
        else:
            messages.success(request, f"{schema}: database structure updated ({len(plan.statements)} statement(s)).")
