"""The sync admin: staged-data and cloud-data browsers, retry/discard, "Sync now", sync runs and
the dashboard, through Django's test client against the real databases (SQLite or PostgreSQL)."""

import html
import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaignsite.permissions import SYSTEM
from staging import charts, ddl, selectors, services, sync
from staging.models import Schema, SyncRun
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import SAMPLE_SOURCE, TYPED_SOURCE, record, staged_schema

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

STG = "dem:sampleTableStg"
DASHBOARD = "/admin/staging/dashboard/"


def page_text(response) -> str:
    return re.sub(r"\s+", " ", html.unescape(response.content.decode()))


def visible_text(response) -> str:
    """What a reader sees: the page without its tags."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())))


def execute(alias: str, sql: str, params=()):
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def staged(schema: Schema, *query: str) -> str:
    url = reverse("admin:staging_schema_staged", args=[schema.pk])
    return f"{url}?{'&'.join(query)}" if query else url


def statuses() -> dict[str, str]:
    return dict(execute("default", "SELECT uSampleTableId, sStgStatus FROM DemSampleTableStg"))


def shown(response, column: str = "uSampleTableId") -> list:
    """The values of `column` in the rows a browser page lists, top to bottom."""
    return [value for row in response.context["rows"] for header, value in row["cells"] if header["name"] == column]


def ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1)) for i in range(n)]


@pytest.fixture
def sample():
    return staged_schema(SAMPLE_SOURCE)


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.get(username="admin")


def staff_client(client, *codenames: str):
    """A staff user with the given staging permissions (view_* to see pages, run_sync to act)."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="staging", codename__in=codenames))
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(client):
    return staff_client(client, "view_schema", "view_syncrun")


def ingest(n: int, *, start: int = 0, user=None) -> list[str]:
    keys = ids(start + n)[start:]
    user = user or User.objects.get(username="admin")
    services.records_ingest(schema_id=STG, records=[record(id=k, testcol1=f"v{i}") for i, k in enumerate(keys)],
                            user=user)
    return keys


def fail_rows(*keys: str) -> None:
    """Rows the sync refused, as it records them (status failed, a reason, one attempt)."""
    for key in keys:
        execute("default", "UPDATE DemSampleTableStg SET sStgStatus = 'failed', mStgError = %s, iStgAttempts = 1 "
                           "WHERE uSampleTableId = %s", [f"duplicate key {key}", key])


# --- Every page answers ------------------------------------------------------------------------------

def test_every_sync_admin_page_answers_for_a_superuser(admin_client, sample):
    keys = ingest(3)
    run = sync.staging_sync(user=SYSTEM, schema=sample, trigger=SyncRun.Trigger.COMMAND)
    seq = execute("default", "SELECT MIN(iStgSeq) FROM DemSampleTableStg")[0][0]
    cloud_row = reverse("admin:staging_schema_cloud_row", args=[sample.pk]) + f"?key={keys[0]}"
    for url in (
        DASHBOARD, reverse("admin:index"), reverse("admin:app_list", args=["staging"]),
        reverse("admin:staging_schema_changelist"), reverse("admin:staging_schema_change", args=[sample.pk]),
        staged(sample), staged(sample, "status=synced", "operation=insert", "order=old"),
        staged(sample, f"q={keys[1]}"),
        reverse("admin:staging_schema_staged_row", args=[sample.pk, seq]),
        reverse("admin:staging_schema_cloud", args=[sample.pk]), cloud_row,
        reverse("admin:staging_syncrun_changelist"), reverse("admin:staging_syncrun_change", args=[run.pk]),
        reverse("admin:django_q_schedule_changelist"),
    ):
        assert admin_client.get(url).status_code == 200, url


def test_admin_index_and_staging_app_page_link_the_dashboard(admin_client):
    for url in (reverse("admin:index"), reverse("admin:app_list", args=["staging"])):
        assert f'href="{DASHBOARD}"' in admin_client.get(url).content.decode(), url


def test_dashboard_needs_a_login(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# --- Staged-data browser ----------------------------------------------------------------------------

def test_staged_browser_shows_business_and_bookkeeping_columns_of_pending_rows(admin_client, sample):
    keys = ingest(2)

    text = page_text(admin_client.get(staged(sample)))

    for column in ("testcol1", "sTestcol1", "status", "sStgStatus", "operation", "sStgOperation", "attempts",
                   "iStgAttempts", "error", "mStgError", "lastModified", "tsLastModified", "syncedAt", "tsStgSynced"):
        assert column in text
    assert keys[0] in text and keys[1] in text
    assert text.count('staging-badge--pending">pending') == 2
    assert "2 rows." in text


def test_staged_browser_filters_by_status(admin_client, sample):
    keys = ingest(3)
    fail_rows(keys[1])

    failed = page_text(admin_client.get(staged(sample, "status=failed")))
    pending = page_text(admin_client.get(staged(sample, "status=pending")))

    assert keys[1] in failed and keys[0] not in failed and "duplicate key" in failed
    assert keys[0] in pending and keys[2] in pending and keys[1] not in pending


def test_staged_browser_filters_by_operation(admin_client, sample, admin_user):
    inserted = ingest(1)[0]
    services.records_ingest_ext(schema_id=STG, records=[record(id=ids(5)[4], testcol1="u", op="update")],
                                user=admin_user)

    text = page_text(admin_client.get(staged(sample, "operation=update")))

    assert ids(5)[4] in text and inserted not in text


def test_staged_browser_finds_a_row_by_exact_key(admin_client, sample):
    keys = ingest(5)

    text = page_text(admin_client.get(staged(sample, f"q={keys[3]}")))
    partial = page_text(admin_client.get(staged(sample, f"q={keys[3][:8]}")))

    assert keys[3] in text and "1 row with this key" in text
    assert all(k not in text for k in keys[:3])
    assert "0 rows with this key" in partial  # exact match only: a key index cannot serve a prefix of a uuid


def test_staged_browser_searches_a_named_key_field(admin_client, admin_user):
    schema = staged_schema(TYPED_SOURCE)
    services.records_ingest(schema_id="dem:typedStg", records=[record(email="a@example.com", code="A"),
                                                              record(email="b@example.com", code="B")],
                            user=admin_user)

    by_field = page_text(admin_client.get(staged(schema, "q=email%3Db@example.com")))
    by_value = page_text(admin_client.get(staged(schema, "q=a@example.com")))
    not_a_key = page_text(admin_client.get(staged(schema, "q=code%3DA")))

    assert "b@example.com" in by_field and "a@example.com" not in by_field
    assert "a@example.com" in by_value and "b@example.com" not in by_value
    assert "code is not a key of dem:typed" in not_a_key and "@email" in not_a_key


def test_staged_browser_pages_by_sequence_newest_first_then_oldest_first(admin_client, sample):
    keys = ingest(250)

    first = admin_client.get(staged(sample))
    second = admin_client.get(staged(sample) + html.unescape(first.context["next_url"]))
    third = admin_client.get(staged(sample) + html.unescape(second.context["next_url"]))
    back = admin_client.get(staged(sample) + html.unescape(third.context["previous_url"]))
    oldest = admin_client.get(staged(sample, "order=old"))

    assert shown(first) == keys[::-1][:100]
    assert shown(second) == keys[::-1][100:200]
    assert shown(third) == keys[::-1][200:]
    assert third.context["next_url"] is None and first.context["previous_url"] is None
    assert shown(back) == shown(second)
    assert shown(oldest) == keys[:100]
    assert "250 rows." in page_text(first)


def test_staged_row_detail_shows_every_column_and_links_the_cloud_record(admin_client, sample):
    key = ingest(1)[0]
    fail_rows(key)
    seq = execute("default", "SELECT iStgSeq FROM DemSampleTableStg")[0][0]

    text = page_text(admin_client.get(reverse("admin:staging_schema_staged_row", args=[sample.pk, seq])))

    assert key in text and "duplicate key" in text and "iStgVersion" in text and "sStgKey" in text
    assert "This record in the cloud table" in text and "Retry this row" in text
    missing = admin_client.get(reverse("admin:staging_schema_staged_row", args=[sample.pk, seq + 99]))
    assert missing.status_code == 404


def test_staged_browser_of_a_schema_without_staging_says_what_to_do(admin_client):
    schema = services.schema_create(user=SYSTEM, source=SAMPLE_SOURCE)

    text = page_text(admin_client.get(staged(schema)))

    assert "has no staging table" in text and "update the database structure" in text


# --- Retry and discard -------------------------------------------------------------------------------

def test_retry_of_selected_failed_rows_asks_then_makes_them_pending(admin_client, sample):
    keys = ingest(3)
    fail_rows(keys[0], keys[1])
    seqs = [s for (s,) in execute("default", "SELECT iStgSeq FROM DemSampleTableStg ORDER BY iStgSeq")]
    url = reverse("admin:staging_schema_failed", args=[sample.pk])
    form = {"action": "retry", "scope": "selected", "seq": [str(seqs[0]), str(seqs[2])], "next": staged(sample)}

    confirmation = admin_client.post(url, form)

    assert confirmation.status_code == 200
    assert "Make 1 failed row of dem:sampleTableStg (of the 2 selected) pending again" in visible_text(confirmation)
    assert statuses()[keys[0]] == "failed"  # nothing changed before the confirmation
    done = admin_client.post(url, {**form, "confirm": "yes"}, follow=True)
    assert statuses() == {keys[0]: "pending", keys[1]: "failed", keys[2]: "pending"}
    assert "1 failed row(s) made pending again" in page_text(done)


def test_discard_of_all_failed_rows_deletes_only_failed_ones(admin_client, sample):
    keys = ingest(3)
    fail_rows(keys[0], keys[2])
    url = reverse("admin:staging_schema_failed", args=[sample.pk])

    confirmation = admin_client.post(url, {"action": "discard", "scope": "all"})
    assert "Delete 2 failed rows of dem:sampleTableStg (every failed row)" in visible_text(confirmation)
    admin_client.post(url, {"action": "discard", "scope": "all", "confirm": "yes"})

    assert statuses() == {keys[1]: "pending"}


def test_a_failed_insert_retried_after_the_cause_is_fixed_reaches_the_cloud(admin_client, sample):
    key = ingest(1)[0]
    execute("cloud", "INSERT INTO DemSampleTable (uSampleTableId, sTestcol1) VALUES (%s, 'in the way')", [key])
    sync.staging_sync(user=SYSTEM, schema=sample, trigger=SyncRun.Trigger.COMMAND)
    assert "duplicate key" in page_text(admin_client.get(staged(sample, "status=failed")))

    execute("cloud", "DELETE FROM DemSampleTable")
    admin_client.post(reverse("admin:staging_schema_failed", args=[sample.pk]),
                      {"action": "retry", "scope": "all", "confirm": "yes"})
    sync.staging_sync(user=SYSTEM, schema=sample, trigger=SyncRun.Trigger.COMMAND)

    assert execute("cloud", "SELECT uSampleTableId, sTestcol1 FROM DemSampleTable") == [(key, "v0")]
    assert statuses() == {key: "synced"}


# --- Permissions ---------------------------------------------------------------------------------------

def test_without_run_sync_the_pages_show_but_actions_are_hidden_and_refused(viewer_client, sample):
    key = ingest(1, user=User.objects.create_superuser("ingester", "i@example.com", "pw"))[0]
    fail_rows(key)

    browser = viewer_client.get(staged(sample)).content.decode()
    changelist = viewer_client.get(reverse("admin:staging_schema_changelist")).content.decode()
    change = viewer_client.get(reverse("admin:staging_schema_change", args=[sample.pk])).content.decode()
    dashboard = viewer_client.get(DASHBOARD).content.decode()

    assert key in browser and 'name="seq"' not in browser and "Retry failed" not in browser
    assert "Sync now" not in browser + changelist + change + dashboard
    assert viewer_client.post(reverse("admin:staging_schema_failed", args=[sample.pk]),
                              {"action": "discard", "scope": "all", "confirm": "yes"}).status_code == 403
    assert viewer_client.post(reverse("admin:staging_schema_sync", args=[sample.pk])).status_code == 403
    assert statuses() == {key: "failed"}


def test_staff_without_view_permission_cannot_browse_rows(client, sample):
    staff = staff_client(client)
    assert staff.get(staged(sample)).status_code == 403
    assert staff.get(reverse("admin:staging_schema_cloud", args=[sample.pk])).status_code == 403
    assert staff.get(DASHBOARD).status_code == 403


# --- Sync now: queued, never run in the request ----------------------------------------------------

def test_sync_now_button_queues_a_sync_and_runs_nothing_in_the_request(admin_client, sample,
                                                                      django_capture_on_commit_callbacks):
    ingest(2)
    with django_capture_on_commit_callbacks(using="default") as queued:
        response = admin_client.post(reverse("admin:staging_schema_sync", args=[sample.pk]),
                                     {"next": staged(sample)}, follow=True)

    assert len(queued) == 1  # the hand-over to the broker, after commit
    assert response.redirect_chain[-1][0] == staged(sample)
    assert "Synchronization of dem:sampleTable queued" in page_text(response)
    assert SyncRun.objects.count() == 0 and set(statuses().values()) == {"pending"}


def test_sync_now_action_queues_one_sync_per_selected_schema(admin_client, sample,
                                                             django_capture_on_commit_callbacks):
    plain = services.schema_create(user=SYSTEM, source=TYPED_SOURCE.replace(' autoStg="true"', ""))
    with django_capture_on_commit_callbacks(using="default") as queued:
        response = admin_client.post(reverse("admin:staging_schema_changelist"), {
            "action": "sync_now", "_selected_action": [sample.pk, plain.pk], "index": "0",
        }, follow=True)

    text = page_text(response)
    assert len(queued) == 1
    assert "Synchronization of dem:sampleTable queued" in text
    assert "dem:typed has no staging (autoStg is off)" in text


def test_sync_now_is_a_post(admin_client, sample):
    assert admin_client.get(reverse("admin:staging_schema_sync", args=[sample.pk])).status_code == 405


def test_next_parameter_cannot_send_the_user_elsewhere(admin_client, sample, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(using="default"):
        response = admin_client.post(reverse("admin:staging_schema_sync", args=[sample.pk]),
                                     {"next": "https://evil.example.com/"})
    assert response["Location"] == reverse("admin:staging_schema_change", args=[sample.pk])


# --- Schema list -----------------------------------------------------------------------------------

def test_schema_list_shows_pending_failed_last_sync_and_data_links(admin_client, sample):
    keys = ingest(3)
    sync.staging_sync(user=SYSTEM, schema=sample, trigger=SyncRun.Trigger.COMMAND)
    ingest(2, start=3)
    execute("default", "UPDATE DemSampleTableStg SET sStgStatus = 'failed' WHERE uSampleTableId = %s", [keys[0]])

    response = admin_client.get(reverse("admin:staging_schema_changelist"))
    row = re.search(r"<tr>.*?dem:sampleTable.*?</tr>", response.content.decode(), re.S).group(0)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]

    assert "2" in cells and "1" in cells  # pending, failed
    assert any("succeeded" in c for c in cells)
    assert f'href="{staged(sample)}?status=failed"' in row
    assert "staged" in row and "cloud" in row


def test_schema_list_reads_the_backlog_once_per_page_not_per_schema(admin_client, sample):
    staged_schema(TYPED_SOURCE)

    with CaptureQueriesContext(connections["default"]) as queries:
        admin_client.get(reverse("admin:staging_schema_changelist"))

    pending_counts = [q["sql"] for q in queries if "COUNT(*)" in q["sql"].upper() and "stg" in q["sql"].lower()]
    # backlog_by_schema: one pending and one failed count per staged schema, once for the whole page
    assert len(pending_counts) == 4


# --- Cloud-data browser ----------------------------------------------------------------------------

def test_cloud_browser_lists_records_in_key_order_and_finds_one_by_key(admin_client, sample):
    keys = ingest(130)
    sync.staging_sync(user=SYSTEM, schema=sample, trigger=SyncRun.Trigger.COMMAND)
    url = reverse("admin:staging_schema_cloud", args=[sample.pk])

    first = admin_client.get(url)
    second = admin_client.get(url + html.unescape(first.context["next_url"]))
    found = page_text(admin_client.get(f"{url}?q={keys[42]}"))

    assert shown(first) + shown(second) == sorted(keys)
    assert keys[42] in found and "1 row with this key" in found and keys[41] not in found
    detail = page_text(admin_client.get(first.context["rows"][0]["url"]))
    assert sorted(keys)[0] in detail and "Staged rows of this record" in detail


def test_cloud_browser_is_read_only(admin_client, sample):
    ingest(1)
    sync.staging_sync(user=SYSTEM, schema=sample, trigger=SyncRun.Trigger.COMMAND)

    text = admin_client.get(reverse("admin:staging_schema_cloud", args=[sample.pk])).content.decode()

    assert "<form method=\"post\"" not in text and 'name="seq"' not in text


# --- Sync runs -------------------------------------------------------------------------------------

def test_sync_runs_list_shows_counts_and_filters_by_schema_status_and_trigger(admin_client, sample):
    typed = staged_schema(TYPED_SOURCE)
    ingest(2)
    sync.staging_sync(user=SYSTEM, schema=sample, trigger=SyncRun.Trigger.COMMAND)
    sync.staging_sync(user=SYSTEM, schema=typed, trigger=SyncRun.Trigger.SCHEDULE)
    url = reverse("admin:staging_syncrun_changelist")

    everything = admin_client.get(url)
    by_schema = admin_client.get(url, {"schema": "dem:typed"})
    by_trigger = admin_client.get(url, {"trigger": "command"})
    by_status = admin_client.get(url, {"status": "failed"})

    assert [r.schema for r in everything.context["cl"].result_list] == ["dem:typed", "dem:sampleTable"]
    assert [r.schema for r in by_schema.context["cl"].result_list] == ["dem:typed"]
    assert [(r.schema, r.sent, r.inserted) for r in by_trigger.context["cl"].result_list] == [
        ("dem:sampleTable", 2, 2)]
    assert list(by_status.context["cl"].result_list) == []
    assert "succeeded" in page_text(everything)


def test_sync_runs_are_read_only(admin_client, sample):
    run = sync.staging_sync(user=SYSTEM, schema=sample, trigger=SyncRun.Trigger.COMMAND)

    detail = admin_client.get(reverse("admin:staging_syncrun_change", args=[run.pk]))

    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert admin_client.get(reverse("admin:staging_syncrun_add")).status_code == 403
    assert admin_client.get(reverse("admin:staging_syncrun_delete", args=[run.pk])).status_code == 403


def test_sync_runs_list_counts_at_most_the_cap(admin_client, sample):
    with CaptureQueriesContext(connections["default"]) as queries:
        admin_client.get(reverse("admin:staging_syncrun_changelist"))

    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "syncrun" in q["sql"].lower()]
    assert counts and all(re.search(r"LIMIT \d+", sql) for sql in counts), counts


# --- Dashboard ---------------------------------------------------------------------------------------

def test_dashboard_shows_backlog_last_and_next_run_from_the_shared_selector(admin_client, sample):
    from staging.schedules import schedules_setup

    keys = ingest(3)
    sync.staging_sync(user=SYSTEM, schema=sample, trigger=SyncRun.Trigger.COMMAND)
    ingest(2, start=3)
    fail_rows(keys[0])
    schedules_setup()

    response = admin_client.get(DASHBOARD)
    text = page_text(response)
    backlog = {b.schema_id: b for b in selectors.backlog_by_schema()}

    entry = response.context["backlog"][0]["item"]
    assert entry == backlog["dem:sampleTable"]
    assert (entry.pending, entry.failed) == (2, 1)
    assert "Next scheduled synchronization" in text and response.context["next_run"] == selectors.next_sync_time()
    assert "succeeded" in text and "Sync now" in text


def test_dashboard_chart_has_one_bar_per_run_that_moved_rows(admin_client, sample):
    for start, count in ((0, 2), (2, 3), (5, 3)):
        ingest(count, start=start)
        sync.staging_sync(user=SYSTEM, schema=sample, trigger=SyncRun.Trigger.COMMAND)
    sync.staging_sync(user=SYSTEM, schema=sample, trigger=SyncRun.Trigger.COMMAND)  # nothing left: not a bar
    old = SyncRun.objects.create(schema="dem:sampleTable", trigger="command", status="succeeded", sent=9)
    SyncRun.objects.filter(pk=old.pk).update(started_at=timezone.now() - timedelta(days=8))

    svg = re.search(r"<svg[^>]*staging-chart.*?</svg>", admin_client.get(DASHBOARD).content.decode(), re.S).group(0)

    assert re.findall(r'<g class="bar" data-value="(\d+)"', svg) == ["2", "3", "3"]


def test_dashboard_without_runs_says_so(admin_client, sample):
    assert "No run moved any row in the last 7 days." in page_text(admin_client.get(DASHBOARD))


# --- Chart (pure) --------------------------------------------------------------------------------------

def test_chart_draws_one_bar_per_item_scaled_to_a_round_maximum():
    svg = charts.bar_chart_svg([charts.Bar(10, "a", group="Mon"), charts.Bar(40, "b", part=5, group="Mon"),
                                charts.Bar(20, "c", group="Tue")], title="Rows", width=300, height=140)

    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('<g class="bar"') == 3 and svg.count('class="part"') == 1
    assert ">50</text>" in svg  # 40 rounds up to 50 at the top of the axis
    assert svg.count(">Mon</text>") == 1 and svg.count(">Tue</text>") == 1


def test_chart_escapes_every_text_it_writes():
    svg = charts.bar_chart_svg([charts.Bar(1, '<script>alert("x")</script>', group="<b>", href='/x?a=1&b="2"')],
                               title="A & <B>")

    assert "<script>" not in svg and "<b>" not in svg
    assert "&lt;script&gt;" in svg and "A &amp; &lt;B&gt;" in svg and 'href="/x?a=1&amp;b=&quot;2&quot;"' in svg


def test_chart_without_bars_shows_the_empty_text():
    svg = charts.bar_chart_svg([], title="Rows", empty_text="Nothing yet")
    assert "Nothing yet" in svg and 'class="bar"' not in svg


@pytest.mark.parametrize("value,ceiling", [(0, 1), (1, 1), (3, 5), (7, 10), (10, 10), (11, 20), (4999, 5000)])
def test_chart_axis_ceiling_is_a_round_number(value, ceiling):
    assert charts.nice_ceiling(value) == ceiling


# --- Big tables: indexes, keyset pages, no unbounded COUNT -------------------------------------------

BIG = 200_000


def fill_staging(n: int) -> None:
    """`n` staged rows in one executemany: mostly synced, a few pending and failed, as after months of syncs."""
    def status(i):
        return "failed" if i % 10_000 == 7 else "pending" if i >= n - 500 else "synced"

    rows = [(str(uuid.UUID(int=i + 1)), f"v{i}", "insert" if i % 3 else "insertOrUpdate", status(i), "testcol1")
            for i in range(n)]
    with connections["default"].cursor() as cursor:
        cursor.executemany("INSERT INTO DemSampleTableStg (uSampleTableId, sTestcol1, sStgOperation, sStgStatus, "
                           "mStgColumns) VALUES (%s, %s, %s, %s, %s)", rows)
        cursor.execute("ANALYZE DemSampleTableStg")


def plan_of(sql: str) -> str:
    connection = connections["default"]
    prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    rows = execute("default", prefix + sql)
    return "\n".join(str(r[-1]) if connection.vendor == "sqlite" else str(r[0]) for r in rows)


def unbounded_counts(queries) -> list[str]:
    """COUNT queries not over a LIMITed subquery, on a staging table."""
    return [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "stg" in q["sql"].lower()
            and not re.search(r"LIMIT \d+\) capped", q["sql"])]


@pytest.mark.slow
def test_staged_browser_on_200k_rows_walks_indexes_and_never_counts_the_table(admin_client, sample):
    fill_staging(BIG)
    failed_key = str(uuid.UUID(int=10_008))
    pages = [staged(sample), staged(sample, "status=failed"), staged(sample, "status=pending", "order=old"),
             staged(sample, "operation=insertOrUpdate"), staged(sample, f"q={failed_key}"),
             staged(sample, "status=synced", "after=150000")]

    with CaptureQueriesContext(connections["default"]) as queries:
        for url in pages:
            response = admin_client.get(url)
            assert response.status_code == 200, url
        failed_page = admin_client.get(staged(sample, "status=failed"))
    queries = list(queries)  # the next request outside the block resets the connection's query log

    assert unbounded_counts(queries) == []
    assert len(failed_page.context["rows"]) == BIG // 10_000 and failed_page.context["capped"] is False
    everything = admin_client.get(staged(sample))
    assert everything.context["capped"] is True and "More than 10,000 rows" in page_text(everything)

    selects = [q["sql"] for q in queries if q["sql"].startswith("SELECT") and "ORDER BY" in q["sql"]
               and "demsampletablestg" in q["sql"].lower()]
    status_select = next(s for s in selects if "'failed'" in s)
    key_select = next(s for s in selects if failed_key in s)
    status_plan, key_plan = plan_of(status_select), plan_of(key_select)
    index = ddl.index_name("DemSampleTableStg", "status").lower()
    assert index in status_plan.lower(), status_plan
    assert "scan demsampletablestg\n" not in status_plan.lower() + "\n" and "Seq Scan" not in status_plan
    assert "Seq Scan" not in key_plan and not re.search(r"^SCAN DemSampleTableStg$", key_plan, re.M | re.I), key_plan


@pytest.mark.slow
def test_cloud_browser_on_200k_rows_pages_by_primary_key_without_counting_the_table(admin_client, sample):
    rows = [(str(uuid.UUID(int=i + 1)), f"v{i}") for i in range(BIG)]
    with connections["cloud"].cursor() as cursor:
        cursor.executemany("INSERT INTO DemSampleTable (uSampleTableId, sTestcol1) VALUES (%s, %s)", rows)
        cursor.execute("ANALYZE DemSampleTable")
    url = reverse("admin:staging_schema_cloud", args=[sample.pk])

    with CaptureQueriesContext(connections["cloud"]) as queries:
        first = admin_client.get(url)
        second = admin_client.get(url + html.unescape(first.context["next_url"]))

    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert counts and all(re.search(r"LIMIT \d+\) capped", sql) for sql in counts), counts
    assert shown(second)[:1] == [rows[100][0]]
    assert "OFFSET" not in " ".join(q["sql"] for q in queries)
