"""retry_on_deadlock: a transaction PostgreSQL picked as a deadlock victim runs again; nothing else does."""

import psycopg.errors
import pytest
from django.db import OperationalError

from campaignsite.db import retry_on_deadlock


def failing(times: int, cause: Exception):
    calls = []

    @retry_on_deadlock(attempts=3)
    def transaction_body():
        calls.append(1)
        if len(calls) <= times:
            raise OperationalError("aborted") from cause
        return "committed"

    return transaction_body, calls


def test_a_deadlock_victim_runs_again_until_it_commits():
    body, calls = failing(2, psycopg.errors.DeadlockDetected())

    assert body() == "committed"
    assert len(calls) == 3


def test_a_deadlock_that_outlasts_the_attempts_is_raised():
    body, calls = failing(5, psycopg.errors.DeadlockDetected())

    with pytest.raises(OperationalError):
        body()
    assert len(calls) == 3


def test_other_operational_errors_are_not_retried():
    body, calls = failing(1, psycopg.errors.QueryCanceled())

    with pytest.raises(OperationalError):
        body()
    assert len(calls) == 1
