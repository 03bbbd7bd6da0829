"""API tokens: keys a program sends to the REST API (`Token`/`Bearer`) and to SOAP (`Bearer`).

Only a SHA-256 digest of each key is stored, as for SOAP sessions (staging.soap_sessions): a key is
256 random bits, so an unsalted fast hash cannot be brute-forced and lets the lookup use the unique
index. django-rest-knox was the library alternative; it was not chosen because it reads one header
prefix only (both `Token` and `Bearer` must work), revokes by deleting the row (no record of who held
which token), has no token names, and SOAP would still need its own lookup beside its authentication
class. The services in apitokens.services are the one path for REST, SOAP, the admin and the command.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    """One key of one user: its digest, a name to tell it apart, and when it stops working."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What the token is for, e.g. the program using it.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name or 'API token'} of {self.user}"

    def is_live(self, now=None) -> bool:
        now = now or timezone.now()
        return (self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
                and self.user.is_active)
