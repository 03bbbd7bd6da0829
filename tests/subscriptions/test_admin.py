"""The subscriptions admin: read-only subscriptions and history searchable by email, the page of
requests waiting in staging, and "Process now" queuing a task."""

import pytest
from django.contrib.auth.models import User

from subscriptions.models import Service
from tests.conftest import BOTH_DATABASES

from .conftest import make_user, process, subscribe, unsubscribe

pytestmark = [pytest.mark.django_db(databases=BOTH_DATABASES), pytest.mark.usefixtures("builtins")]


@pytest.fixture
def staff_client(client):
    def login(*perms):
        user = make_user("staff", *perms)
        User.objects.filter(pk=user.pk).update(is_staff=True)
        client.login(username="staff", password="Subs-pass;word")
        return client
    return login


def test_history_is_searchable_by_email_and_read_only(requester, admin_client):
    Service.objects.create(name="newsletter")
    subscribe(requester, email="a@example.com", create=True)
    subscribe(requester, email="b@example.com", create=True)
    process()

    page = admin_client.get("/admin/subscriptions/subscriptionhistory/", {"q": "a@example.com"}).content.decode()

    assert "a@example.com" in page and "b@example.com" not in page
    assert admin_client.get("/admin/subscriptions/subscriptionhistory/add/").status_code == 403
    assert admin_client.get("/admin/subscriptions/subscription/add/").status_code == 403


def test_the_requests_page_shows_failed_requests_with_their_reason(requester, admin_client):
    unsubscribe(requester, "nope", email="a@example.com")
    process()

    page = admin_client.get("/admin/subscriptions/subscription/requests/", {"status": "failed"}).content.decode()

    assert "unknown service &#x27;nope&#x27;" in page and "opt-out" in page


def test_the_requests_page_needs_the_manage_permission(staff_client):
    client = staff_client("subscriptions.view_subscription")

    assert client.get("/admin/subscriptions/subscription/requests/").status_code == 403


def test_process_now_queues_the_task_after_commit(staff_client, requester, django_capture_on_commit_callbacks):
    from django_q.brokers import get_broker

    client = staff_client("subscriptions.manage_subscriptions", "subscriptions.view_subscription")
    broker = get_broker()
    broker.purge_queue()
    subscribe(requester, email="a@example.com", create=True)

    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post("/admin/subscriptions/subscription/requests/")

    assert answer.status_code == 302
    assert broker.queue_size() == 1
