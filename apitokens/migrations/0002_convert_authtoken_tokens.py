"""Converts the plaintext keys of DRF's `authtoken_token` table (the API tokens before this app) into
hashed API tokens, so programs using them keep working, then deletes the plaintext rows.

The converted tokens expire API_TOKEN_TTL_DAYS after this migration (never when it is 0). Databases
created without `rest_framework.authtoken` have no such table and nothing to convert. The emptied table
is left in place: Django still records its migrations as applied.
"""

from datetime import datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.db import migrations
from django.utils import timezone
from django.utils.dateparse import parse_datetime

# The digest must be the one lookups use, whatever it becomes: imported, not frozen here.
from apitokens.services import key_digest

AUTHTOKEN_TABLE = "authtoken_token"


def _aware(value):
    # SQLite hands back text; PostgreSQL an aware datetime.
    value = parse_datetime(value) if isinstance(value, str) else value
    if not isinstance(value, datetime):
        return timezone.now()
    return value if timezone.is_aware(value) else value.replace(tzinfo=dt_timezone.utc)


def convert_authtoken_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if AUTHTOKEN_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("apitokens", "ApiToken")
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quote('key')}, {quote('user_id')}, {quote('created')} FROM {quote(AUTHTOKEN_TABLE)}")
        rows = cursor.fetchall()
    now = timezone.now()
    expires_at = now + timedelta(days=settings.API_TOKEN_TTL_DAYS) if settings.API_TOKEN_TTL_DAYS else None
    ApiToken.objects.using(connection.alias).bulk_create(
        [ApiToken(user_id=user_id, name="DRF token (converted)", digest=key_digest(key),
                  created_at=_aware(created), expires_at=expires_at) for key, user_id, created in rows],
        ignore_conflicts=True,  # a second run after a partial one must not fail on the unique digest
    )
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {quote(AUTHTOKEN_TABLE)}")


class Migration(migrations.Migration):

    dependencies = [("apitokens", "0001_initial")]

    operations = [
        # Backwards there is nothing to restore: only digests are kept.
        migrations.RunPython(convert_authtoken_tokens, migrations.RunPython.noop),
    ]
