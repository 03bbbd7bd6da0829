"""Password logons, with failed attempts limited per login and per client address.

Checking a password costs a deliberately slow hash (~0.5 s of CPU with Django's PBKDF2 default), so
unlimited guesses are both a brute-force risk and a way to starve the workers. The policy, in
fixed windows of LOGON_THROTTLE_WINDOW_SECONDS (15 min by default):

- at most LOGON_THROTTLE_PER_LOGIN failed logons per login (5), whatever the address;
- at most LOGON_THROTTLE_PER_ADDRESS failed logons per client address (20), whatever the login.

Once either count is reached, later attempts of that login / from that address are refused at once,
BEFORE the password is hashed, until the window ends. A successful logon clears its login's count
(not its address's: one valid account must not reset the guesses made from that address against
others). Counters live in Django's cache, which is the database cache here and so shared by every
worker process; incrementing it is not atomic, so concurrent failures may be under-counted by a few.
A fixed window lets a client spend its allowance at the end of one window and again at the start of
the next; the bound stays 2x the limit per window length.
"""

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.cache import cache

from campaignsite.errors import Problem, Throttled, Unauthenticated


@dataclass(frozen=True)
class _Counter:
    key: str
    limit: int
    what: str  # names the counter in the refusal


def client_address(request) -> str:
    """The caller's IP: REMOTE_ADDR, or the last entry of LOGON_CLIENT_ADDRESS_HEADER when a trusted
    proxy in front of the server sets it (the last entry is the one that proxy appended)."""
    header = settings.LOGON_CLIENT_ADDRESS_HEADER
    if header:
        forwarded = request.META.get(header, "").rpartition(",")[2].strip()
        if forwarded:
            return forwarded
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def _digest(value: str) -> str:
    # Keys carry no login in clear and stay short whatever the caller sent.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _window(now: float) -> tuple[int, int]:
    """(index of the current window, seconds until it ends)."""
    length = settings.LOGON_THROTTLE_WINDOW_SECONDS
    index = int(now // length)
    return index, max(1, math.ceil((index + 1) * length - now))


def _counters(login: str, address: str, now: float) -> list[_Counter]:
    index, _ = _window(now)
    counters = [_Counter(f"logon-fail:address:{_digest(address)}:{index}", settings.LOGON_THROTTLE_PER_ADDRESS,
                         f"from the address {address}")]
    if login:
        counters.append(_Counter(f"logon-fail:login:{_digest(login.casefold())}:{index}",
                                 settings.LOGON_THROTTLE_PER_LOGIN, f"for the login '{login}'"))
    return [c for c in counters if c.limit > 0]  # a limit of 0 turns that counter off


def logon_authenticate(*, request, login: str, password: str, now: float | None = None):
    """The active user `login`/`password` names; Throttled when too many logons failed recently,
    without checking the password; Unauthenticated (one message, whichever part was wrong) otherwise.

    `now` (seconds since the epoch) is for tests; it picks the window the attempt counts in.
    """
    now = time.time() if now is None else now
    counters = _counters(login, client_address(request), now)
    _, retry_after = _window(now)
    counts = cache.get_many([c.key for c in counters])
    for counter in counters:
        if counts.get(counter.key, 0) >= counter.limit:
            raise Throttled(
                f"Too many failed logons {counter.what}; try again in {retry_after} seconds.",
                [Problem(f"Retry-After: {retry_after}; at most {counter.limit} failed logons are allowed per "
                         f"{settings.LOGON_THROTTLE_WINDOW_SECONDS} seconds")],
                retry_after=retry_after,
            )
    user = authenticate(request, username=login, password=password) if login else None
    if user is None or not user.is_active:
        timeout = retry_after + 1
        for counter in counters:
            cache.add(counter.key, 0, timeout)
            try:
                cache.incr(counter.key)
            except ValueError:  # expired between add and incr
                cache.set(counter.key, 1, timeout)
        raise Unauthenticated("Invalid login or password.")
    cache.delete_many([c.key for c in counters if c.key.startswith("logon-fail:login:")])
    return user
