"""Admin forms for schemas.

The services are the only judge of a source (parsing, reserved namespaces, id changes, staging
rules). The editor validates by calling them: a DomainError becomes form errors next to the field,
and a clean form means the service has already saved (Django's changeform view runs inside a
transaction on the default database, so nothing outlives a failed request). The changelist's
autoStg toggles are applied after the whole list validated, all or none (see SchemaAutoStgListForm).
"""

from django import forms
from django.core.exceptions import ValidationError
from django.db import transaction

from campaignsite.errors import DomainError
from staging import services
from staging.models import Schema


def _errors_of(error: DomainError) -> list[ValidationError]:
    """The error's message, then one entry per problem (line, attribute, value: what to change)."""
    return [ValidationError(error.message), *(ValidationError(str(p)) for p in error.problems)]


class SchemaSourceForm(forms.ModelForm):
    """The editor: the srcSchema XML, and an autoStg box that rewrites autoStg in it when changed."""

    auto_stg = forms.BooleanField(
        label="autoStg",
        required=False,
        help_text="Stage API writes in a local copy. Changing this box rewrites autoStg on the main element; "
        "update the database structure afterwards to create or drop the staging table.",
    )

    class Meta:
        model = Schema
        fields = ("source",)
        widgets = {
            "source": forms.Textarea(
                attrs={"class": "staging-source", "rows": 28, "cols": 120, "spellcheck": "false", "wrap": "off"}
            )
        }

    user = None  # set by the admin on a per-request subclass (see SchemaAdmin.get_form)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "source" not in self.fields:  # a view-only user: the admin shows the fields read-only
            return
        self.fields["auto_stg"].initial = self.instance.auto_stg
        self.fields["source"].strip = False  # the source is kept verbatim, indentation included

    def clean_source(self) -> str:
        # Browsers submit a textarea's line breaks as CRLF whatever was pasted (HTML form encoding).
        return self.cleaned_data["source"].replace("\r\n", "\n")

    def clean(self):
        cleaned = super().clean()
        if "source" not in cleaned:
            return cleaned
        try:
            # One atomic block so a created schema does not stay behind when the autoStg rewrite fails.
            with transaction.atomic(using="default"):
                if self.instance.pk is None:
                    schema = services.schema_create(source=cleaned["source"], user=self.user)
                else:
                    schema = services.schema_update(schema=self.instance, source=cleaned["source"], user=self.user)
                if "auto_stg" in self.changed_data:
                    schema = services.schema_set_auto_stg(schema=schema, enabled=cleaned["auto_stg"], user=self.user)
        except DomainError as error:
            self.add_error("source", _errors_of(error))
            return cleaned
        self.instance = schema
        # The form mirrors what was saved (the box may have rewritten the source).
        cleaned["source"] = schema.source
        cleaned["auto_stg"] = schema.auto_stg
        return cleaned


class SchemaAutoStgListForm(forms.ModelForm):
    """One row of the changelist: the autoStg toggle.

    Validating saves nothing: the admin applies the changed rows through `schema_set_auto_stg` in one
    transaction after the whole list validated (`SchemaAdmin.save_model`). When the service refuses a
    row, that transaction is rolled back and the list is validated again with the refusal in
    `refusals` (schema pk -> DomainError), which puts it on the row.
    """

    class Meta:
        model = Schema
        fields = ("auto_stg",)

    user = None  # set by the admin on a per-request subclass
    refusals: dict = {}

    def clean(self):
        cleaned = super().clean()
        refusal = self.refusals.get(self.instance.pk)
        if refusal is not None and "auto_stg" in self.changed_data:
            self.add_error("auto_stg", _errors_of(refusal))
        return cleaned
