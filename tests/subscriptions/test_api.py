"""The subscriptions REST API: requests answered at once (202) and applied by processing; services
CRUD, a recipient's subscriptions and history, each behind its Django permission."""

import base64

import pytest
from rest_framework.test import APIClient

from apitokens.services import api_token_create
from subscriptions.models import Service
from tests.api_tokens import api_token
from tests.conftest import BOTH_DATABASES

from .conftest import add_recipient, history, make_user, process, recipients, requests_state, subscriptions

pytestmark = [pytest.mark.django_db(databases=BOTH_DATABASES), pytest.mark.usefixtures("builtins")]


def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


@pytest.fixture
def webform():
    return api(make_user("webform", "staging.ingest"))


@pytest.fixture
def operator():
    return api(make_user("operator", "subscriptions.view_service", "subscriptions.add_service",
                         "subscriptions.change_service", "subscriptions.delete_service",
                         "subscriptions.view_subscription", "subscriptions.view_subscriptionhistory"))


def test_subscribe_answers_202_at_once_and_processing_applies_it(webform, operator):
    Service.objects.create(name="newsletter")

    answer = webform.post("/api/v1/subscriptions/subscribe/", {
        "service": "newsletter", "recipient": {"email": "a@example.com"}, "create": True, "origin": "web-form",
    }, format="json")

    assert answer.status_code == 202, answer.content
    assert answer.json()["status"] == "pending" and answer.json()["request"]
    assert subscriptions() == []  # asynchronous, as in Campaign v8
    process()
    listed = operator.get("/api/v1/subscriptions/", {"email": "a@example.com"}).json()["results"]
    assert [(s["email"], s["service"], s["status"], s["origin"]) for s in listed] == [
        ("a@example.com", "newsletter", "active", "web-form")]
    assert listed[0]["recipient_id"] == recipients()[0][0]


def test_unsubscribe_without_service_denylists(webform):
    add_recipient("r-1", "a@example.com")

    answer = webform.post("/api/v1/subscriptions/unsubscribe/", {"recipient": {"id": "r-1"}}, format="json")
    process()

    assert answer.status_code == 202
    assert recipients() == [("r-1", "a@example.com", 1)]


def test_a_list_of_services_is_one_request(webform):
    Service.objects.create(name="a")
    Service.objects.create(name="b")
    add_recipient("r-1", "x@example.com")

    webform.post("/api/v1/subscriptions/subscribe/", {"service": ["a", "b"], "recipient": {"id": "r-1"}},
                 format="json")
    process()

    assert len(requests_state()) == 1
    assert [service for _, service, _ in subscriptions()] == ["a", "b"]


def test_a_request_without_recipient_or_service_is_refused_naming_the_field(webform):
    answer = webform.post("/api/v1/subscriptions/subscribe/", {"recipient": {}}, format="json")

    assert answer.status_code == 400
    attributes = {p["attribute"] for p in answer.json()["problems"]}
    assert attributes == {"serviceName", "recipient"}
    assert requests_state() == []


def test_requests_need_the_ingest_permission(operator):
    answer = operator.post("/api/v1/subscriptions/subscribe/",
                           {"service": "x", "recipient": {"email": "a@example.com"}}, format="json")

    assert answer.status_code == 403
    assert "staging.ingest" in answer.json()["problems"][0]["message"]


def test_requests_need_authentication():
    answer = APIClient().post("/api/v1/subscriptions/subscribe/", {}, format="json")

    assert answer.status_code == 401


def test_services_crud(operator):
    created = operator.post("/api/v1/services/", {"name": "newsletter", "label": "News", "channel": "email",
                                                  "validity_days": 30, "requires_confirmation": True}, format="json")
    assert created.status_code == 201, created.content

    changed = operator.patch("/api/v1/services/newsletter/", {"label": "The news"}, format="json")
    listed = operator.get("/api/v1/services/").json()["results"]
    deleted = operator.delete("/api/v1/services/newsletter/")

    assert changed.json()["label"] == "The news"
    assert [(s["name"], s["channel"], s["validity_days"]) for s in listed] == [("newsletter", "email", 30)]
    assert deleted.status_code == 204 and not Service.objects.exists()


def test_a_duplicate_service_name_or_unknown_channel_is_refused(operator):
    Service.objects.create(name="newsletter")

    duplicate = operator.post("/api/v1/services/", {"name": "newsletter"}, format="json")
    channel = operator.post("/api/v1/services/", {"name": "other", "channel": "fax"}, format="json")

    # DRF's validation errors have the API's one error shape, each problem naming its field.
    assert duplicate.status_code == 400 and duplicate.json()["code"] == "CST-400200"
    assert [p["attribute"] for p in duplicate.json()["problems"]] == ["name"]
    assert channel.status_code == 400 and [p["attribute"] for p in channel.json()["problems"]] == ["channel"]


def test_a_service_with_subscriptions_cannot_be_deleted(operator, webform):
    Service.objects.create(name="newsletter")
    add_recipient("r-1", "a@example.com")
    webform.post("/api/v1/subscriptions/subscribe/", {"service": "newsletter", "recipient": {"id": "r-1"}},
                 format="json")
    process()

    answer = operator.delete("/api/v1/services/newsletter/")

    assert answer.status_code == 409
    assert "1 subscription(s)" in answer.json()["error"]


def test_reading_needs_the_view_permissions(webform):
    assert webform.get("/api/v1/services/").status_code == 403
    assert webform.get("/api/v1/subscriptions/").status_code == 403
    assert webform.get("/api/v1/subscriptions/history/").status_code == 403


def test_a_recipients_history_newest_first(operator, webform):
    Service.objects.create(name="newsletter")
    add_recipient("r-1", "a@example.com")
    add_recipient("r-2", "b@example.com")
    for path, recipient in (("subscribe", "r-1"), ("subscribe", "r-2"), ("unsubscribe", "r-1")):
        webform.post(f"/api/v1/subscriptions/{path}/", {"service": "newsletter", "recipient": {"id": recipient}},
                     format="json")
    process()

    rows = operator.get("/api/v1/subscriptions/history/", {"recipient_id": "r-1"}).json()["results"]

    assert [(r["action"], r["service"]) for r in rows] == [("unsubscribe", "newsletter"), ("subscribe", "newsletter")]
    assert len(history()) == 3


def test_process_now_needs_the_manage_permission(operator):
    assert operator.post("/api/v1/subscriptions/process/").status_code == 403


def test_process_now_queues_a_processing_task(django_capture_on_commit_callbacks):
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    manager = api(make_user("manager", "subscriptions.manage_subscriptions"))
    broker = get_broker()
    broker.purge_queue()

    with django_capture_on_commit_callbacks(execute=True):
        answer = manager.post("/api/v1/subscriptions/process/")

    assert answer.status_code == 202
    [(_, package)] = broker.dequeue()
    task = SignedPackage.loads(package)
    assert (task["func"], task["args"]) == ("subscriptions.tasks.process_subscriptions", ("api",))


@pytest.mark.parametrize("position", ["abc", "1e5", "9" * 5000, "9" * 30])
@pytest.mark.parametrize("url", ["/api/v1/services/", "/api/v1/subscriptions/", "/api/v1/subscriptions/history/"])
def test_an_edited_cursor_is_an_invalid_cursor_not_a_server_error(operator, url, position):
    # DRF hands a cursor's position to the query as it is: these answered 500 (ValueError).
    cursor = base64.b64encode(f"p={position}".encode()).decode()
    answer = operator.get(url, {"cursor": cursor, "page_size": "9" * 30})
    assert answer.status_code == 404 and answer.json()["error"] == "Invalid cursor"
