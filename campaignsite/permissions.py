"""Who a service acts for, and the one permission check the services share.

Services that write take `user`: the Django user a request authenticated (SOAP, REST, admin), or
`SYSTEM` when the product acts by itself (manage.py commands, scheduled tasks, loading the built-in
schemas). None means nobody authenticated and is refused like an anonymous user: leaving the user out
never skips a check by accident.
"""

from campaignsite.errors import Forbidden, Problem, Unauthenticated


class _System:
    """The product acting by itself. Whoever runs manage.py on the server already holds the database
    credentials, so a permission check would protect nothing; `manage.py ingest --user` is the way to
    act as a given user instead."""

    is_authenticated = True
    is_active = True
    pk = None

    def has_perm(self, perm: str, obj=None) -> bool:
        return True

    def __str__(self) -> str:
        return "system"

    def __repr__(self) -> str:
        return "SYSTEM"


SYSTEM = _System()


def permission_require(user, permission: str, what: str) -> None:
    """Unauthenticated unless `user` is someone (or SYSTEM); Forbidden unless they hold `permission`.
    `what` completes "User 'x' may not …"."""
    if user is None or not getattr(user, "is_authenticated", False):
        raise Unauthenticated(f"Authentication is required to {what}.")
    if not user.has_perm(permission):
        raise Forbidden(
            f"User '{user}' may not {what}.",
            [Problem(f"grant the permission '{permission}' to this user or one of its groups (admin: Users)")],
        )


def acting_user(user):
    """The user to record as author (modified_by): None for SYSTEM."""
    return None if user is SYSTEM or user is None or not user.is_authenticated else user
