"""Processing of opt-in/opt-out requests against real databases: staged request in, cloud rows and
history out."""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from campaignsite.permissions import SYSTEM
from staging import services as staging_services
from staging import sync
from staging.models import SyncLedger
from staging.records import RecordInput
from subscriptions import services
from subscriptions.models import Service, Subscription, SubscriptionHistory
from tests.conftest import BOTH_DATABASES

from .conftest import (add_recipient, execute, history, process, recipients, requests_state, subscribe,
                       subscriptions, unsubscribe)

pytestmark = [pytest.mark.django_db(databases=BOTH_DATABASES), pytest.mark.usefixtures("builtins")]


def test_opt_in_with_create_makes_the_recipient_subscribes_it_and_writes_history(requester, newsletter):
    subscribe(requester, email="a@example.com", create=True, origin="web-form")

    run = process()

    [(recipient_id, email, denylisted)] = recipients()
    assert (email, denylisted) == ("a@example.com", 0) and len(recipient_id) == 36
    assert subscriptions() == [("a@example.com", "newsletter", "active")]
    assert Subscription.objects.get().recipient_id == recipient_id
    assert history() == [("a@example.com", "newsletter", "subscribe", "web-form")]
    assert requests_state() == [("synced", 1, None)]
    assert (run.status, run.sent, run.inserted) == ("succeeded", 1, 1)


def test_opt_in_of_a_known_recipient_by_id(requester, newsletter):
    add_recipient("r-1", "known@example.com")

    subscribe(requester, recipient_id="r-1")
    process()

    assert subscriptions() == [("known@example.com", "newsletter", "active")]
    assert recipients() == [("r-1", "known@example.com", 0)]


def test_opt_in_is_idempotent_one_subscription_one_history_row(requester, newsletter):
    add_recipient("r-1", "a@example.com")
    subscribe(requester, email="a@example.com")
    process()
    subscribe(requester, email="a@example.com")
    subscribe(requester, email="a@example.com")

    process()

    assert subscriptions() == [("a@example.com", "newsletter", "active")]
    assert [action for _, _, action, _ in history()] == ["subscribe"]
    assert [status for status, _, _ in requests_state()] == ["synced"] * 3


def test_opt_out_removes_the_subscription_and_writes_history(requester, newsletter):
    add_recipient("r-1", "a@example.com")
    subscribe(requester, email="a@example.com")
    process()

    unsubscribe(requester, email="a@example.com", origin="unsubscribe-link")
    process()

    assert subscriptions() == []
    assert history()[-1] == ("a@example.com", "newsletter", "unsubscribe", "unsubscribe-link")


def test_opt_out_of_someone_not_subscribed_does_nothing_and_raises_nothing(requester, newsletter):
    add_recipient("r-1", "a@example.com")
    unsubscribe(requester, email="a@example.com")

    run = process()

    assert subscriptions() == [] and history() == []
    assert requests_state() == [("synced", 1, None)]
    assert run.failed == 0


def test_opt_out_without_service_puts_the_recipient_on_the_denylist(requester, newsletter):
    add_recipient("r-1", "a@example.com")
    subscribe(requester, email="a@example.com")
    unsubscribe(requester, "", email="a@example.com")

    run = process()

    assert recipients() == [("r-1", "a@example.com", 1)]
    assert history()[-1] == ("a@example.com", "", "denylist", "test")
    assert SubscriptionHistory.objects.order_by("pk").last().service is None
    assert run.updated == 1


def test_denylisting_someone_already_denylisted_changes_nothing(requester):
    add_recipient("r-1", "a@example.com", denylisted=1)
    unsubscribe(requester, "", recipient_id="r-1")

    process()

    assert history() == []
    assert requests_state()[0][0] == "synced"


def test_unknown_service_fails_the_request_with_the_reason(requester, newsletter):
    add_recipient("r-1", "a@example.com")
    subscribe(requester, "newsletter,nope", email="a@example.com")
    subscribe(requester, email="a@example.com")

    run = process()

    (status, _, error), (second, _, _) = requests_state()
    assert status == "failed"
    assert "unknown service 'nope'" in error and "known services: newsletter" in error
    assert second == "synced"  # a failed request does not block the others
    assert subscriptions() == [("a@example.com", "newsletter", "active")]  # only the second applied
    assert (run.status, run.failed) == ("partial", 1)


def test_several_comma_separated_services_in_one_request(requester, newsletter):
    Service.objects.create(name="offers", label="Offers")
    add_recipient("r-1", "a@example.com")

    subscribe(requester, " newsletter , offers ", email="a@example.com")
    process()

    assert subscriptions() == [("a@example.com", "newsletter", "active"), ("a@example.com", "offers", "active")]


def test_a_recipient_not_yet_in_the_cloud_waits_then_is_processed_once_synced(requester, newsletter, builtins):
    subscribe(requester, email="late@example.com")
    first = process()
    assert requests_state()[0][:2] == ("pending", 1)
    assert "no recipient with email 'late@example.com'" in requests_state()[0][2]
    assert first.skipped == 1 and subscriptions() == []

    recipient = RecordInput(values={"email": "late@example.com"}, key=None, operation=None)
    staging_services.records_ingest(schema_id="nms:recipientStg", records=[recipient], user=requester)
    sync.staging_sync(user=SYSTEM, schema=builtins["nms:recipient"], trigger="command")
    process()

    assert subscriptions() == [("late@example.com", "newsletter", "active")]
    assert requests_state()[0][:2] == ("synced", 2)


def test_an_opt_in_whose_recipient_never_arrives_fails_after_the_bounded_attempts(requester, newsletter, settings):
    settings.SUBSCRIPTION_MAX_ATTEMPTS = 3
    subscribe(requester, recipient_id="ghost")

    for _ in range(3):
        process()

    status, attempts, error = requests_state()[0]
    assert (status, attempts) == ("failed", 3)
    assert "no recipient with id 'ghost'" in error and "after 3 attempts" in error
    process()
    assert requests_state()[0][1] == 3  # a failed request is not read again


def test_an_opt_out_whose_recipient_never_arrives_is_skipped_without_error(requester, newsletter, settings):
    settings.SUBSCRIPTION_MAX_ATTEMPTS = 1
    unsubscribe(requester, email="nobody@example.com")

    run = process()

    assert requests_state()[0][0] == "skipped"
    assert run.failed == 0


def test_requests_for_one_recipient_apply_in_order_within_a_batch_and_across_batches(requester, newsletter):
    add_recipient("r-1", "a@example.com")
    add_recipient("r-2", "b@example.com")
    for user_email in ("a@example.com", "b@example.com"):
        subscribe(requester, email=user_email)
        unsubscribe(requester, email=user_email)
    subscribe(requester, email="a@example.com")

    process(batch_size=2)

    assert subscriptions() == [("a@example.com", "newsletter", "active")]
    assert [(who, action) for who, _, action, _ in history()] == [
        ("a@example.com", "subscribe"), ("a@example.com", "unsubscribe"),
        ("b@example.com", "subscribe"), ("b@example.com", "unsubscribe"), ("a@example.com", "subscribe"),
    ]


def test_create_in_two_requests_of_one_batch_makes_one_recipient(requester, newsletter):
    offers = Service.objects.create(name="offers")
    subscribe(requester, email="new@example.com", create=True)
    subscribe(requester, offers.name, email="new@example.com", create=True)

    process()

    assert len(recipients()) == 1
    assert len(subscriptions()) == 2


def test_rows_ingested_straight_into_the_staging_schema_are_requests_too(requester, newsletter):
    add_recipient("r-1", "a@example.com")
    ingest = [RecordInput(values={"email": "a@example.com", "service": "newsletter"}, key=None, operation=None)]
    staging_services.records_ingest(schema_id="nms:subscriptionRcpStg", records=ingest, user=requester)
    process()
    assert subscriptions() == [("a@example.com", "newsletter", "active")]

    ingest = [RecordInput(values={"email": "a@example.com", "service": "newsletter", "delete": "true"},
                          key=None, operation=None)]
    staging_services.records_ingest(schema_id="nms:subscriptionRcpStg", records=ingest, user=requester)
    process()

    assert subscriptions() == []
    assert execute("default", "SELECT iDelete FROM NmsSubscriptionRcpStg ORDER BY iStgSeq") == [(0,), (1,)]


def test_a_crash_between_the_cloud_commit_and_the_bookkeeping_is_recovered_without_duplicates(requester, newsletter):
    subscribe(requester, email="a@example.com", create=True)
    unsubscribe(requester, "", email="a@example.com")
    tables = services._Tables()
    requests = services._read_pending(tables, after_seq=0, limit=10)
    batch = services._prepare(tables, requests)
    services._apply(tables, batch, [services._decide(r, batch) for r in requests])
    # The worker dies here: the cloud committed (with its ledger entry), staging still says pending.
    assert [status for status, _, _ in requests_state()] == ["pending", "pending"]

    run = process()

    assert len(recipients()) == 1 and recipients()[0][2] == 1
    assert subscriptions() == [("a@example.com", "newsletter", "active")]
    assert [action for _, _, action, _ in history()] == ["subscribe", "denylist"]
    assert [status for status, _, _ in requests_state()] == ["synced", "synced"]
    assert run.sent == 0
    assert not SyncLedger.objects.using("cloud").filter(schema="nms:subscriptionRcp").exists()


def test_a_second_processor_is_turned_away_while_one_runs(requester, newsletter):
    subscribe(requester, email="a@example.com", create=True)
    assert sync.lease_acquire(name=services.LEASE, holder="otherhost:1:1")

    run = process()

    assert run.status == "busy"
    assert requests_state()[0][0] == "pending"


def test_processing_without_the_builtin_tables_is_refused_with_a_reason(requester):
    from staging.models import Schema

    Schema.objects.filter(name="recipient").update(applied_fingerprint="")

    run = process()

    assert run.status == "failed" and "nms:recipient" in run.error


# --- Validity ---------------------------------------------------------------------------------

def test_validity_sets_the_expiry_and_the_daily_task_unsubscribes_expired_ones(requester):
    Service.objects.create(name="trial", validity_days=30)
    add_recipient("r-1", "a@example.com")
    subscribe(requester, "trial", email="a@example.com")
    process()
    subscription = Subscription.objects.get()
    assert subscription.expires - subscription.created == timedelta(days=30)

    assert services.subscriptions_expire(user=SYSTEM, now=timezone.now() + timedelta(days=29)) == 0
    assert services.subscriptions_expire(user=SYSTEM, now=timezone.now() + timedelta(days=31)) == 1

    assert subscriptions() == []
    assert history()[-1] == ("a@example.com", "trial", "unsubscribe", "expired")


def test_the_expiry_is_declared_as_a_daily_schedule():
    from django_q.models import Schedule

    from staging.schedules import schedules_setup

    names = {s.name: s for s in schedules_setup()}
    expiry = names["subscriptions: expire subscriptions past their validity"]
    assert (expiry.func, expiry.schedule_type) == ("subscriptions.tasks.expire_subscriptions", Schedule.DAILY)


# --- Double opt-in ----------------------------------------------------------------------------

@pytest.fixture
def confirmed_service():
    return Service.objects.create(name="digest", label="Weekly digest", requires_confirmation=True, validity_days=10)


def confirmation_link() -> str:
    [message] = mail.outbox
    return next(line for line in message.body.splitlines() if "/subscriptions/confirm/" in line).strip()


def test_a_service_requiring_confirmation_creates_a_pending_subscription_and_sends_the_link(
        requester, confirmed_service, settings):
    settings.SITE_URL = "https://news.example.com"
    subscribe(requester, "digest", email="a@example.com", create=True)

    process()

    assert subscriptions() == [("a@example.com", "digest", "pending-confirmation")]
    assert Subscription.objects.get().expires is None
    [message] = mail.outbox
    assert message.to == ["a@example.com"] and "Weekly digest" in message.subject
    assert confirmation_link().startswith("https://news.example.com/subscriptions/confirm/")
    assert [action for _, _, action, _ in history()] == ["confirmation-sent"]


def test_following_the_link_activates_the_subscription_once(requester, confirmed_service, client):
    subscribe(requester, "digest", email="a@example.com", create=True)
    process()
    path = "/" + confirmation_link().split("://", 1)[1].partition("/")[2]

    assert "Confirm my subscription" in client.get(path).content.decode()
    assert subscriptions()[0][2] == "pending-confirmation"  # opening the page alone confirms nothing
    first = client.post(path)
    again = client.post(path)

    assert "Subscription confirmed" in first.content.decode()
    assert "already confirmed" in again.content.decode()
    assert subscriptions() == [("a@example.com", "digest", "active")]
    subscription = Subscription.objects.get()
    assert subscription.expires - subscription.confirmed == timedelta(days=10)
    assert [(action, origin) for _, _, action, origin in history()] == [
        ("confirmation-sent", "test"), ("subscribe", "confirmation")]


def test_a_tampered_link_is_refused(client):
    answer = client.post("/subscriptions/confirm/not-a-real-token/")

    assert answer.status_code == 400
    assert "not valid" in answer.content.decode()


def test_an_expired_link_is_refused(requester, confirmed_service, client, settings):
    subscribe(requester, "digest", email="a@example.com", create=True)
    process()
    path = "/" + confirmation_link().split("://", 1)[1].partition("/")[2]
    settings.SUBSCRIPTION_CONFIRM_DAYS = 0  # every link is older than zero days

    answer = client.post(path)

    assert answer.status_code == 400 and "expired" in answer.content.decode()
    assert subscriptions()[0][2] == "pending-confirmation"


def test_asking_again_while_pending_sends_the_link_again_without_new_history(requester, confirmed_service):
    subscribe(requester, "digest", email="a@example.com", create=True)
    process()
    subscribe(requester, "digest", email="a@example.com", create=True)

    process()

    assert len(mail.outbox) == 2
    assert len(history()) == 1 and len(subscriptions()) == 1


# --- Command and mobile registrations --------------------------------------------------------

def test_the_command_processes_and_reports(requester, newsletter, capsys):
    subscribe(requester, email="a@example.com", create=True)

    call_command("process_subscriptions", "--expire")

    out = capsys.readouterr().out
    assert "1 request(s): 1 subscribed" in out and "0 expired subscription(s)" in out
    assert len(subscriptions()) == 1


def test_mobile_app_registrations_sync_like_any_staged_schema(requester, builtins):
    record = RecordInput(values={"registrationToken": "tok-1", "mobileApp": "shop", "platform": "ios",
                                 "recipient-id": "r-1", "disabled": "false"}, key=None, operation=None)
    [uuid] = staging_services.records_ingest(schema_id="nms:appSubscriptionRcpStg", records=[record],
                                             user=requester).uuids

    run = sync.staging_sync(user=SYSTEM, schema=builtins["nms:appSubscriptionRcp"], trigger="command")

    assert run.inserted == 1
    assert execute("cloud", "SELECT uAppSubscriptionRcpId, sRegistrationToken, sMobileApp, sRecipientId, iDisabled "
                            "FROM NmsAppSubscriptionRcp") == [(uuid, "tok-1", "shop", "r-1", 0)]
