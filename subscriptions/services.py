"""Subscriptions: requests through staging, their processing, expiry and double opt-in.

Requests are rows of the built-in staged schema nms:subscriptionRcp (an append-only log): SOAP
Subscribe/Unsubscribe, REST and plain Ingest all write them through `staging.services.records_ingest`.
`subscriptions_process` consumes the pending rows in ingestion order, a batch at a time, the way the
sync consumes other schemas (staging/sync.py):

1. Take the lease "process:nms:subscriptionRcp" (one processor at a time, across machines).
2. Recover: outcomes a crashed run committed in the cloud (`SyncLedger`) are recorded in staging first,
   so those requests are not applied twice.
3. For a batch: look recipients, services and existing subscriptions up in bulk, decide every request
   in order against that in-memory state, then write recipients, subscriptions, history and the
   ledger entry in ONE cloud transaction.
4. Record the outcomes in staging with a version check, drop the ledger entry, send the
   confirmation emails of the batch.

Outcomes: `synced` (applied, or nothing to do), `failed` (with the reason), or still `pending` with one
more attempt when the recipient is not in the cloud yet (its own sync may come later); after
SUBSCRIPTION_MAX_ATTEMPTS attempts an opt-in fails and an opt-out is `skipped` (Campaign's Unsubscribe
of an unknown recipient does nothing and raises nothing).
"""

import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import DatabaseError, connections, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from campaignsite.errors import Conflict, InvalidInput, NotFound, Problem
from campaignsite.permissions import permission_require
from staging import ddl
from staging import services as staging_services
from staging.models import Schema, StructureState, SyncLedger, SyncRun
from staging.records import RecordInput
from staging.sync import lease_acquire, lease_name, lease_release, run_holder
from subscriptions.models import Service, Subscription, SubscriptionHistory

logger = logging.getLogger(__name__)

REQUEST_SCHEMA = "nms:subscriptionRcp"
REQUEST_STAGING_ID = "nms:subscriptionRcpStg"
RECIPIENT_SCHEMA = "nms:recipient"
LEASE = lease_name(REQUEST_SCHEMA)
BATCH_SIZE = 1000
LOOKUP_CHUNK = 500  # values per IN (...): far below SQLite's bound-parameter limit
CONFIRM_SALT = "subscriptions.confirm"

ORIGIN_EXPIRED = "expired"
ORIGIN_CONFIRMATION = "confirmation"

DONE = ddl.STATUS_SYNCED
FAILED = ddl.STATUS_FAILED
SKIPPED = ddl.STATUS_SKIPPED
WAITING = ddl.STATUS_PENDING


class ProcessingRefused(Conflict):
    code = "CST-409500"


# --- Requests -------------------------------------------------------------------------------

def service_names_parse(raw: str | Iterable[str] | None) -> list[str]:
    """"a, b,,a" or ["a", "b"] -> ["a", "b"]: names stripped, empties dropped, each once, in order."""
    parts = raw.split(",") if isinstance(raw, str) else [p for item in (raw or ()) for p in str(item).split(",")]
    return list(dict.fromkeys(p.strip() for p in parts if p.strip()))


def subscription_request(*, service_names: str | Sequence[str], recipient_id: str = "", email: str = "",
                         create: bool = False, unsubscribe: bool = False, origin: str = "", user) -> str:
    """Stage one opt-in (or opt-out with `unsubscribe`) request; returns the id of its staging row.

    Processing is asynchronous (`subscriptions_process`). An opt-out naming no service puts the
    recipient on the denylist. Writes through the ingest service, so it needs `staging.ingest`.
    """
    names = service_names_parse(service_names)
    recipient_id, email = (recipient_id or "").strip(), (email or "").strip()
    problems = []
    if not names and not unsubscribe:
        problems.append(Problem("name at least one service to subscribe to (comma-separated names)",
                                attribute="serviceName", value=""))
    if not recipient_id and not email:
        problems.append(Problem('identify the recipient by id or email, e.g. <recipient _key="@email" '
                                'email="a@example.com"/>', attribute="recipient", value=""))
    if problems:
        raise InvalidInput("The subscription request is incomplete.", problems)
    values = {"service": ",".join(names), "create": "true" if create else "false",
              "delete": "true" if unsubscribe else "false"}
    if recipient_id:
        values["recipient-id"] = recipient_id
    if email:
        values["email"] = email
    if origin:
        values["origin"] = origin
    result = staging_services.records_ingest(schema_id=REQUEST_STAGING_ID,
                                             records=[RecordInput(values=values, key=None, operation=None)],
                                             user=user)
    return result.ids[0]


# --- Tables the processor reads and writes --------------------------------------------------

def _up_to_date_schema(schema_id: str) -> Schema:
    namespace, _, name = schema_id.partition(":")
    schema = Schema.objects.filter(namespace=namespace, name=name).first()
    if schema is None:
        raise ProcessingRefused(f"The built-in schema {schema_id} is not loaded; run manage.py load_builtin_schemas.")
    if schema.structure_state != StructureState.UP_TO_DATE:
        raise ProcessingRefused(f"The database structure of {schema_id} is not up to date; run "
                                f"manage.py update_structure {schema_id}.")
    return schema


class _Tables:
    """Quoted names of the request staging table and the recipient cloud table."""

    def __init__(self):
        requests = _up_to_date_schema(REQUEST_SCHEMA)
        if not requests.auto_stg:
            raise ProcessingRefused(f"Staging is off on {REQUEST_SCHEMA}, so no request can be staged or processed.")
        recipients = _up_to_date_schema(RECIPIENT_SCHEMA).description
        self.local_vendor = connections[ddl.LOCAL].vendor
        self.cloud_vendor = connections[ddl.CLOUD].vendor
        lq = self.lq
        description = requests.description
        self.requests = lq(description.staging_table)
        self.request_columns = [lq(c) for c in (ddl.COL_SEQ, ddl.COL_VERSION, ddl.COL_ATTEMPTS, ddl.COL_DELETE)] + [
            lq(description.attribute(n).sql_name)
            for n in ("id", "recipient-id", "email", "service", "origin", "create")
        ]
        cq = self.cq
        self.recipients = cq(recipients.sql_table)
        self.recipient_id = cq(recipients.attribute("id").sql_name)
        self.recipient_email = cq(recipients.attribute("email").sql_name)
        self.recipient_denylist = cq(recipients.attribute("blackList").sql_name)

    def lq(self, name: str) -> str:
        return ddl.quote(name, self.local_vendor)

    def cq(self, name: str) -> str:
        return ddl.quote(name, self.cloud_vendor)


@dataclass
class Request:
    seq: int
    version: int
    attempts: int
    opt_out: bool
    id: str
    recipient_id: str
    email: str
    services: list[str]
    origin: str
    create: bool


@dataclass
class Recipient:
    id: str
    email: str
    denylisted: bool
    new: bool = False


@dataclass
class Outcome:
    seq: int
    version: int
    status: str
    error: str = ""


@dataclass
class Counts:
    sent: int = 0
    subscribed: int = 0
    unsubscribed: int = 0
    denylisted: int = 0
    waiting: int = 0
    skipped: int = 0
    failed: int = 0


def _read_pending(tables: _Tables, *, after_seq: int, limit: int) -> list[Request]:
    lq = tables.lq
    sql = (f"SELECT {', '.join(tables.request_columns)} FROM {tables.requests} "
           f"WHERE {lq(ddl.COL_STATUS)} = %s AND {lq(ddl.COL_SEQ)} > %s ORDER BY {lq(ddl.COL_SEQ)} LIMIT %s")
    with connections[ddl.LOCAL].cursor() as cursor:
        cursor.execute(sql, [ddl.STATUS_PENDING, after_seq, limit])
        return [
            Request(seq=seq, version=version, attempts=attempts or 0, opt_out=bool(delete), id=rid or "",
                    recipient_id=(recipient or "").strip(), email=(email or "").strip(),
                    services=service_names_parse(service), origin=origin or "", create=bool(create))
            for seq, version, attempts, delete, rid, recipient, email, service, origin, create in cursor.fetchall()
        ]


def _chunks(values: list, size: int = LOOKUP_CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _recipients_lookup(tables: _Tables, *, ids: set[str], emails: set[str]) -> tuple[dict, dict]:
    """Cloud recipients by id and by email (the lowest id wins when several share an email)."""
    by_id: dict[str, Recipient] = {}
    by_email: dict[str, Recipient] = {}
    select = (f"SELECT {tables.recipient_id}, {tables.recipient_email}, {tables.recipient_denylist} "
              f"FROM {tables.recipients} WHERE ")
    with connections[ddl.CLOUD].cursor() as cursor:
        for column, wanted in ((tables.recipient_id, sorted(ids)), (tables.recipient_email, sorted(emails))):
            for chunk in _chunks(wanted):
                cursor.execute(f"{select}{column} IN ({', '.join(['%s'] * len(chunk))}) "
                               f"ORDER BY {tables.recipient_id}", chunk)
                for rid, email, denylisted in cursor.fetchall():
                    recipient = by_id.setdefault(rid, Recipient(rid, email or "", bool(denylisted)))
                    if email:
                        by_email.setdefault(email, recipient)
    return by_id, by_email


# --- Deciding a batch -----------------------------------------------------------------------

@dataclass
class _Batch:
    """The in-memory state a batch's requests are decided against, and what they change."""

    now: datetime
    services: dict[str, Service]
    by_id: dict[str, Recipient]
    by_email: dict[str, Recipient]
    initial: dict[tuple[str, int], Subscription]
    current: dict[tuple[str, int], Subscription] = field(default_factory=dict)
    history: list[SubscriptionHistory] = field(default_factory=list)
    denylist: list[str] = field(default_factory=list)
    confirmations: list[Subscription] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)

    def __post_init__(self):
        self.current = dict(self.initial)

    def record(self, request: Request, recipient: Recipient, action: str, service: Service | None) -> None:
        self.history.append(SubscriptionHistory(
            recipient_id=recipient.id, email=recipient.email, service=service,
            service_name=service.name if service else "", action=action, at=self.now,
            origin=request.origin, request_id=request.id,
        ))


def _retry(request: Request, reason: str, counts: Counts) -> Outcome:
    attempts = request.attempts + 1
    if attempts < settings.SUBSCRIPTION_MAX_ATTEMPTS:
        counts.waiting += 1
        return Outcome(request.seq, request.version, WAITING, f"attempt {attempts}: {reason}; retried at the next run")
    if request.opt_out:
        # Campaign: unsubscribing someone who is not in the database does nothing and raises nothing.
        counts.skipped += 1
        return Outcome(request.seq, request.version, SKIPPED, f"{reason} after {attempts} attempts; nothing to do")
    counts.failed += 1
    return Outcome(request.seq, request.version, FAILED, f"{reason} after {attempts} attempts")


def _failed(request: Request, reason: str, counts: Counts) -> Outcome:
    counts.failed += 1
    return Outcome(request.seq, request.version, FAILED, reason)


def _decide(request: Request, batch: _Batch) -> Outcome:
    """Apply one request to the batch's state; returns its outcome."""
    counts = batch.counts
    if not request.recipient_id and not request.email:
        return _failed(request, "the request names no recipient: set recipient-id or email", counts)
    unknown = [name for name in request.services if name not in batch.services]
    if unknown:
        known = ", ".join(sorted(batch.services)[:20]) or "none yet (create one in the admin or the API)"
        return _failed(request, f"unknown service {', '.join(repr(n) for n in unknown)}; known services: {known}",
                       counts)
    if not request.services and not request.opt_out:
        return _failed(request, "an opt-in must name a service (service is empty)", counts)

    if request.recipient_id:
        recipient = batch.by_id.get(request.recipient_id)
        if recipient is None:
            return _retry(request, f"no recipient with id '{request.recipient_id}' in the cloud (NmsRecipient)",
                          counts)
    else:
        recipient = batch.by_email.get(request.email)
        if recipient is None and request.create and not request.opt_out:
            recipient = Recipient(id=str(uuid.uuid4()), email=request.email, denylisted=False, new=True)
            batch.by_id[recipient.id] = batch.by_email[recipient.email] = recipient
        if recipient is None:
            hint = "" if request.opt_out else " (send create=true to create it)"
            return _retry(request, f"no recipient with email '{request.email}' in the cloud (NmsRecipient){hint}",
                          counts)

    if request.opt_out and not request.services:
        if not recipient.denylisted:
            recipient.denylisted = True
            batch.denylist.append(recipient.id)
            batch.record(request, recipient, SubscriptionHistory.Action.DENYLIST, None)
            counts.denylisted += 1
        return Outcome(request.seq, request.version, DONE)

    for name in request.services:
        service = batch.services[name]
        key = (recipient.id, service.pk)
        existing = batch.current.get(key)
        if request.opt_out:
            if existing is not None:
                del batch.current[key]
                batch.record(request, recipient, SubscriptionHistory.Action.UNSUBSCRIBE, service)
                counts.unsubscribed += 1
            continue
        if existing is not None:
            if existing.status == Subscription.Status.PENDING:
                batch.confirmations.append(existing)  # asked again: send the link again, nothing else changes
            continue
        pending = service.requires_confirmation
        subscription = Subscription(
            recipient_id=recipient.id, email=recipient.email, service=service, created=batch.now,
            status=Subscription.Status.PENDING if pending else Subscription.Status.ACTIVE,
            expires=None if pending or not service.validity_days else batch.now + timedelta(days=service.validity_days),
            origin=request.origin,
        )
        batch.current[key] = subscription
        if pending:
            batch.confirmations.append(subscription)
            batch.record(request, recipient, SubscriptionHistory.Action.CONFIRMATION_SENT, service)
        else:
            batch.record(request, recipient, SubscriptionHistory.Action.SUBSCRIBE, service)
            counts.subscribed += 1
    return Outcome(request.seq, request.version, DONE)


def _prepare(tables: _Tables, requests: list[Request]) -> _Batch:
    """Bulk lookups for a batch: services, recipients, then their subscriptions to those services."""
    names = {name for r in requests for name in r.services}
    services = {s.name: s for s in Service.objects.using(ddl.CLOUD).filter(name__in=names)} if names else {}
    by_id, by_email = _recipients_lookup(
        tables, ids={r.recipient_id for r in requests if r.recipient_id},
        emails={r.email for r in requests if r.email and not r.recipient_id},
    )
    initial = {}
    service_ids = [s.pk for s in services.values()]
    if service_ids:
        for chunk in _chunks(sorted(by_id)):
            for subscription in Subscription.objects.using(ddl.CLOUD).filter(
                recipient_id__in=chunk, service_id__in=service_ids
            ).select_related("service"):
                initial[(subscription.recipient_id, subscription.service_id)] = subscription
    return _Batch(now=timezone.now(), services=services, by_id=by_id, by_email=by_email, initial=initial)


def _apply(tables: _Tables, batch: _Batch, outcomes: list[Outcome]) -> None:
    """Write what the batch decided, and its outcomes in the ledger, in one cloud transaction."""
    removed = [s.pk for key, s in batch.initial.items() if batch.current.get(key) is not s]
    added = [s for s in batch.current.values() if s.pk is None]
    created = [r for r in batch.by_id.values() if r.new]
    with transaction.atomic(using=ddl.CLOUD), connections[ddl.CLOUD].cursor() as cursor:
        if created:
            cursor.executemany(
                f"INSERT INTO {tables.recipients} ({tables.recipient_id}, {tables.recipient_email}) VALUES (%s, %s)",
                [(r.id, r.email) for r in created],
            )
        for chunk in _chunks(sorted(set(batch.denylist))):
            cursor.execute(f"UPDATE {tables.recipients} SET {tables.recipient_denylist} = 1 "
                           f"WHERE {tables.recipient_id} IN ({', '.join(['%s'] * len(chunk))})", chunk)
        for chunk in _chunks(removed):
            Subscription.objects.using(ddl.CLOUD).filter(pk__in=chunk).delete()
        Subscription.objects.using(ddl.CLOUD).bulk_create(added)
        SubscriptionHistory.objects.using(ddl.CLOUD).bulk_create(batch.history)
        SyncLedger.objects.using(ddl.CLOUD).create(
            schema=REQUEST_SCHEMA, outcomes=[[o.seq, o.version, o.status, o.error] for o in outcomes]
        )


def _record_outcomes(tables: _Tables, outcomes: Iterable[Sequence]) -> None:
    """Write outcomes to request rows whose version is unchanged (one executemany, one transaction)."""
    lq = tables.lq
    now = timezone.now()
    to_db = staging_services._sqlite_value if tables.local_vendor == ddl.SQLITE else (lambda v: v)
    sql = (f"UPDATE {tables.requests} SET {lq(ddl.COL_STATUS)} = %s, {lq(ddl.COL_ERROR)} = %s, "
           f"{lq(ddl.COL_SYNCED_AT)} = %s, {lq(ddl.COL_ATTEMPTS)} = {lq(ddl.COL_ATTEMPTS)} + 1 "
           f"WHERE {lq(ddl.COL_SEQ)} = %s AND {lq(ddl.COL_VERSION)} = %s AND {lq(ddl.COL_STATUS)} = %s")
    params = [[status, error or None, to_db(now) if status in (DONE, SKIPPED) else None, seq, version,
               ddl.STATUS_PENDING] for seq, version, status, error in outcomes]
    if params:
        with transaction.atomic(using=ddl.LOCAL), connections[ddl.LOCAL].cursor() as cursor:
            cursor.executemany(sql, params)


def _recover_ledger(tables: _Tables) -> int:
    """Record the outcomes a crashed run committed in the cloud but not in staging."""
    covered = 0
    ledger = SyncLedger.objects.using(ddl.CLOUD).filter(schema=REQUEST_SCHEMA)
    for entry in ledger.order_by("pk"):
        _record_outcomes(tables, entry.outcomes)
        covered += len(entry.outcomes)
        SyncLedger.objects.using(ddl.CLOUD).filter(pk=entry.pk).delete()
    return covered


MANAGE_PERMISSION = "subscriptions.manage_subscriptions"


def subscriptions_process(*, trigger: str = SyncRun.Trigger.COMMAND, user, batch_size: int = BATCH_SIZE,
                          on_batch=None) -> SyncRun:
    """Apply the pending opt-in/opt-out requests of nms:subscriptionRcp, in order; returns the recorded run.

    The run is a `SyncRun` of schema nms:subscriptionRcp: inserted = subscriptions created, deleted =
    subscriptions removed, updated = recipients put on the denylist, skipped = requests left pending
    for a later attempt or skipped, failed = failed requests. Safe to run twice and at once (lease),
    and after a crash at any point (ledger). `on_batch(counts)` reports progress. Needs
    `subscriptions.manage_subscriptions` (the command and the task pass SYSTEM).
    """
    permission_require(user, MANAGE_PERMISSION, "process subscription requests")
    run = SyncRun.objects.create(schema=REQUEST_SCHEMA, trigger=trigger)
    holder = run_holder(run)
    if not lease_acquire(name=LEASE, holder=holder):
        return _finish(run, Counts(), SyncRun.Status.BUSY, "Another processing of subscription requests is running.")
    counts = Counts()
    try:
        tables = _Tables()
        _recover_ledger(tables)
        after = 0
        while True:
            requests = _read_pending(tables, after_seq=after, limit=batch_size)
            if not requests:
                break
            batch = _prepare(tables, requests)
            batch.counts = counts
            outcomes = [_decide(request, batch) for request in requests]
            _apply(tables, batch, outcomes)
            _record_outcomes(tables, [(o.seq, o.version, o.status, o.error) for o in outcomes])
            SyncLedger.objects.using(ddl.CLOUD).filter(schema=REQUEST_SCHEMA).delete()
            counts.sent += len(requests)
            _send_confirmations(batch.confirmations)
            after = requests[-1].seq
            lease_acquire(name=LEASE, holder=holder)  # renew
            if on_batch:
                on_batch(counts)
    except ProcessingRefused as exc:
        return _finish(run, counts, SyncRun.Status.FAILED, exc.message)
    except DatabaseError as exc:
        logger.exception("Processing of subscription requests stopped")
        return _finish(run, counts, SyncRun.Status.FAILED, f"Database error, requests left pending: {exc}")
    finally:
        lease_release(name=LEASE, holder=holder)
    return _finish(run, counts, SyncRun.Status.PARTIAL if counts.failed else SyncRun.Status.SUCCEEDED, "")


def _finish(run: SyncRun, counts: Counts, status: str, error: str) -> SyncRun:
    run.sent, run.inserted, run.deleted = counts.sent, counts.subscribed, counts.unsubscribed
    run.updated, run.skipped, run.failed = counts.denylisted, counts.waiting + counts.skipped, counts.failed
    run.status, run.error, run.finished_at = status, error, timezone.now()
    run.save()
    return run


# --- Double opt-in --------------------------------------------------------------------------

def confirmation_token_make(*, subscription: Subscription) -> str:
    """A signed, timestamped token naming the recipient and the service (not a row id, which changes
    if the subscription is cancelled and requested again)."""
    return signing.TimestampSigner(salt=CONFIRM_SALT).sign_object(
        {"r": subscription.recipient_id, "s": subscription.service.name}
    )


def confirmation_url(*, subscription: Subscription) -> str:
    path = reverse("subscription-confirm", kwargs={"token": confirmation_token_make(subscription=subscription)})
    return settings.SITE_URL.rstrip("/") + path


def _send_confirmations(subscriptions: list[Subscription]) -> None:
    """Email each pending subscription its confirmation link (after the cloud commit, never before)."""
    for subscription in subscriptions:
        if not subscription.email:
            logger.warning("No email address for recipient %s: the confirmation of %s cannot be sent",
                           subscription.recipient_id, subscription.service.name)
            continue
        context = {"subscription": subscription, "service": subscription.service,
                   "url": confirmation_url(subscription=subscription),
                   "days": settings.SUBSCRIPTION_CONFIRM_DAYS}
        subject = f"Please confirm your subscription to {subscription.service.label or subscription.service.name}"
        try:
            send_mail(subject, render_to_string("subscriptions/confirmation_email.txt", context),
                      settings.DEFAULT_FROM_EMAIL, [subscription.email])
        except OSError:
            # The subscription stays pending; asking again sends a new link.
            logger.exception("Sending the confirmation of %s to %s failed", subscription.service.name,
                             subscription.email)


@dataclass(frozen=True)
class Confirmation:
    subscription: Subscription
    newly_confirmed: bool


def subscription_confirm(*, token: str) -> Confirmation:
    """Activate the pending subscription a confirmation link names; confirming again changes nothing.

    Raises InvalidInput for a tampered or expired link, NotFound when the subscription no longer exists.
    """
    max_age = timedelta(days=settings.SUBSCRIPTION_CONFIRM_DAYS)
    try:
        data = signing.TimestampSigner(salt=CONFIRM_SALT).unsign_object(token, max_age=max_age)
    except signing.SignatureExpired:
        raise InvalidInput("This confirmation link has expired.", [Problem(
            f"links are valid for {settings.SUBSCRIPTION_CONFIRM_DAYS} days; subscribe again to get a new one")])
    except signing.BadSignature:
        raise InvalidInput("This confirmation link is not valid.", [Problem("copy the whole link from the email")])
    with transaction.atomic(using=ddl.CLOUD):
        subscription = (Subscription.objects.using(ddl.CLOUD).select_for_update().select_related("service")
                        .filter(recipient_id=data.get("r"), service__name=data.get("s")).first())
        if subscription is None:
            raise NotFound("There is no subscription to confirm any more.", [Problem(
                "it was cancelled or has ended; subscribe again", attribute="service", value=str(data.get("s")))])
        if subscription.status == Subscription.Status.ACTIVE:
            return Confirmation(subscription, False)
        now = timezone.now()
        days = subscription.service.validity_days
        subscription.status = Subscription.Status.ACTIVE
        subscription.confirmed = now
        subscription.expires = now + timedelta(days=days) if days else None
        subscription.save(update_fields=["status", "confirmed", "expires"])
        SubscriptionHistory.objects.using(ddl.CLOUD).create(
            recipient_id=subscription.recipient_id, email=subscription.email, service=subscription.service,
            service_name=subscription.service.name, action=SubscriptionHistory.Action.SUBSCRIBE, at=now,
            origin=ORIGIN_CONFIRMATION,
        )
    return Confirmation(subscription, True)


# --- Validity -------------------------------------------------------------------------------

def subscriptions_expire(*, user, now: datetime | None = None, batch_size: int = BATCH_SIZE) -> int:
    """Unsubscribe every active subscription whose validity ended (history origin `expired`); returns
    how many. Takes the processing lease so it never races a batch of requests. Needs
    `subscriptions.manage_subscriptions`."""
    permission_require(user, MANAGE_PERMISSION, "expire subscriptions")
    now = now or timezone.now()
    holder = f"{socket.gethostname()}:{os.getpid()}:expire"
    if not lease_acquire(name=LEASE, holder=holder):
        logger.info("Subscription expiry skipped: requests are being processed; the next run catches up")
        return 0
    expired = 0
    try:
        due = Subscription.objects.using(ddl.CLOUD).filter(status=Subscription.Status.ACTIVE, expires__lte=now)
        while True:
            with transaction.atomic(using=ddl.CLOUD):
                chunk = list(due.select_related("service").order_by("pk")[:batch_size])
                if not chunk:
                    break
                SubscriptionHistory.objects.using(ddl.CLOUD).bulk_create(
                    SubscriptionHistory(recipient_id=s.recipient_id, email=s.email, service=s.service,
                                        service_name=s.service.name, action=SubscriptionHistory.Action.UNSUBSCRIBE,
                                        at=now, origin=ORIGIN_EXPIRED)
                    for s in chunk
                )
                Subscription.objects.using(ddl.CLOUD).filter(pk__in=[s.pk for s in chunk]).delete()
            expired += len(chunk)
            lease_acquire(name=LEASE, holder=holder)
    finally:
        lease_release(name=LEASE, holder=holder)
    return expired
