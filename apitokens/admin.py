"""API tokens in the admin: listed without their secret; creating one shows its key once; revoking is
an action with a confirmation page."""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from apitokens.models import ApiToken
from apitokens.services import api_token_create, api_tokens_revoke


class ApiTokenAddForm(forms.ModelForm):
    ttl_days = forms.IntegerField(
        label="Lifetime (days)", min_value=0, initial=lambda: settings.API_TOKEN_TTL_DAYS,
        help_text="The token stops working after this many days; 0 = never expires.")

    class Meta:
        model = ApiToken
        fields = ["user", "name"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "user__username"]
    list_select_related = ["user"]
    actions = ["revoke"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name", "ttl_days"]
        return ["user", "name", "created_at", "expires_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["user", "created_at", "expires_at", "last_used_at", "revoked_at"]

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])  # the only editable field
            return
        token, key = api_token_create(user=obj.user, name=obj.name, ttl_days=form.cleaned_data["ttl_days"])
        obj.pk, obj.digest, obj.created_at, obj.expires_at = token.pk, token.digest, token.created_at, token.expires_at
        messages.warning(request, f"The key of {token}: {key} — copy it now, it cannot be shown again.")

    @admin.action(description="Revoke the selected API tokens", permissions=["change"])
    def revoke(self, request, queryset):
        if request.POST.get("confirm") == "yes":
            count = api_tokens_revoke(tokens=queryset)
            self.message_user(request, f"Revoked {count} API token(s); they no longer authenticate.", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Revoke API tokens?",
            "opts": self.model._meta,
            "tokens": list(queryset),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/apitokens/apitoken/revoke_confirmation.html", context)
