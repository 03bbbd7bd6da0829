"""The subscriptions issue's user flow in a real browser: an operator creates a service in the admin,
a web form subscribes over REST, "Process now" queues the processing, the subscription shows in the
admin; then double opt-in: the emailed link, opened in the browser, confirms the subscription."""

import json
import os
import urllib.request

import pytest
from django.core import mail
from django_q.brokers import get_broker
from django_q.signing import SignedPackage
from django.utils.module_loading import import_string

from apitokens.services import api_token_create
from campaignsite.permissions import SYSTEM
from staging import services as staging_services
from subscriptions.models import Subscription
from subscriptions.services import subscriptions_process
from tests.conftest import BOTH_DATABASES
from tests.subscriptions.conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(databases=BOTH_DATABASES, transaction=True)]

SCREENSHOTS = os.environ.get("SCREENSHOT_DIR")


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)


def rest_post(base_url: str, token: str, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{base_url}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def run_queued_tasks() -> int:
    """What a worker of the cluster does with the queue: take each task and run its function."""
    broker = get_broker()
    ran = 0
    while tasks := broker.dequeue():
        for ack_id, package in tasks:
            task = SignedPackage.loads(package)
            import_string(task["func"])(*task["args"], **task["kwargs"])
            broker.acknowledge(ack_id)
            ran += 1
    return ran


@pytest.fixture
def admin_page(live_server, browser_page, django_user_model):
    staging_services.builtin_schemas_load(user=SYSTEM)
    django_user_model.objects.create_superuser("admin", "admin@example.com", "secret-pw")
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "secret-pw")
    page.click("input[type=submit]")
    return page


@pytest.fixture
def webform_token():
    return api_token_create(user=make_user("webform", "staging.ingest"))[1]


def test_service_created_in_admin_subscribe_over_rest_process_now_and_see_it(live_server, admin_page, webform_token):
    page = admin_page
    get_broker().purge_queue()
    page.goto(f"{live_server.url}/admin/subscriptions/service/add/")
    page.fill("#id_name", "newsletter")
    page.fill("#id_label", "Newsletter")
    page.click("input[name=_save]")
    assert "newsletter" in page.locator("#result_list").inner_text()

    status, answer = rest_post(live_server.url, webform_token, "/api/v1/subscriptions/subscribe/",
                               {"service": "newsletter", "recipient": {"email": "a@example.com"}, "create": True,
                                "origin": "web-form"})
    assert status == 202 and answer["status"] == "pending"

    page.goto(f"{live_server.url}/admin/subscriptions/subscription/")
    page.get_by_role("link", name="Requests waiting in staging").click()
    table = page.locator("#request_list").inner_text()
    assert "a@example.com" in table and "opt-in" in table and "newsletter" in table
    screenshot(page, "subscription_requests")
    page.click("#process-now input[type=submit]")
    assert "queued" in page.locator("ul.messagelist").inner_text()
    assert run_queued_tasks() == 1

    page.goto(f"{live_server.url}/admin/subscriptions/subscription/")
    rows = page.locator("#result_list").inner_text()
    assert "a@example.com" in rows and "newsletter" in rows and "Active" in rows
    screenshot(page, "subscriptions")
    page.goto(f"{live_server.url}/admin/subscriptions/subscriptionhistory/?q=a%40example.com")
    assert "Subscribe\tnewsletter\ta@example.com" in page.locator("#result_list").inner_text()


def test_double_opt_in_link_from_the_email_confirms_in_the_browser(live_server, admin_page, webform_token, settings):
    settings.SITE_URL = live_server.url
    page = admin_page
    page.goto(f"{live_server.url}/admin/subscriptions/service/add/")
    page.fill("#id_name", "digest")
    page.check("#id_requires_confirmation")
    page.click("input[name=_save]")
    rest_post(live_server.url, webform_token, "/api/v1/subscriptions/subscribe/",
              {"service": "digest", "recipient": {"email": "b@example.com"}, "create": True})
    subscriptions_process(user=SYSTEM, trigger="command")
    assert Subscription.objects.get().status == "pending-confirmation"

    [message] = mail.outbox
    link = next(line.strip() for line in message.body.splitlines() if "/subscriptions/confirm/" in line)
    page.goto(link)
    page.get_by_role("button", name="Confirm my subscription").click()

    assert page.locator("h1").inner_text() == "Subscription confirmed"
    screenshot(page, "confirmed")
    assert Subscription.objects.get().status == "active"
    page.goto(link)
    page.get_by_role("button", name="Confirm my subscription").click()
    assert "already confirmed" in page.locator("body").inner_text()
