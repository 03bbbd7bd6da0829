"""Make sure an administrator can log in after `make run`, without an interactive prompt."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from campaignsite.env import env_str


class Command(BaseCommand):
    help = (
        "Create a superuser if needed: ADMIN_USERNAME (default 'admin') with ADMIN_PASSWORD, or with a "
        "generated password printed once. An existing account is left exactly as it is."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        username = env_str("ADMIN_USERNAME", "") or "admin"
        password = env_str("ADMIN_PASSWORD", "")
        explicitly_named = bool(env_str("ADMIN_USERNAME", ""))

        if User.objects.filter(**{User.USERNAME_FIELD: username}).exists():
            self.stdout.write(f"Admin account {username!r} exists; left unchanged.")
            return
        existing = User.objects.filter(is_superuser=True).order_by("pk").first()
        if existing and not explicitly_named and not password:
            # Someone already chose their own administrator; do not add a second one behind their back.
            self.stdout.write(f"Superuser {existing.get_username()!r} exists; no admin account created.")
            return

        generated = not password
        if generated:
            password = secrets.token_urlsafe(15)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            rule = "=" * 72
            self.stdout.write(
                f"{rule}\n"
                f"Created the admin account {username!r} with the generated password:\n\n"
                f"    {password}\n\n"
                "It is shown only this once. Log in at /admin/ and change it there, or set\n"
                "ADMIN_USERNAME/ADMIN_PASSWORD before the first `make run` to choose your own.\n"
                f"{rule}"
            )
        else:
            self.stdout.write(f"Created the admin account {username!r} with the password from ADMIN_PASSWORD.")
