"""Adobe's own client, @adobe/acc-js-sdk (pinned in package-lock.json), against the real server.

`conformance.js` plays an existing Campaign integration over real HTTP (pytest-django's live_server):
logon, Ingest in its JSON and XML forms, IngestExt update and delete, a collection, Write, a fault,
queries (xtk:queryDef select/get/getIfExists/count), an expired session, logoff. It reports one JSON
line per step; each step is asserted on its own (subtests) and then against what actually landed in
the local and cloud databases.
"""

import json
import os
import queue
import re
import subprocess
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connections
from django.utils import timezone

from tests.api_tokens import api_token as make_api_token

from campaignsite.permissions import SYSTEM
from staging import ddl, services
from staging.options import Option, options_seed
from tests.conftest import BOTH_DATABASES

pytestmark = [pytest.mark.node, pytest.mark.slow]

# Step 1 of the seed "Campaign API staging mechanism": the sample schema, staging not yet enabled.
SAMPLE_SCHEMA = """\
<srcSchema _cs="Sample Table (dem)" created="YYYY-DD-MM"
        entitySchema="xtk:srcSchema" img="xtk:schema.png" label="Sample Table"
        lastModified="YYY-DD-MM HH:MM:SS.TZ" mappingType="sql" md5="XXX"
        modifiedBy-id="0" name="sampleTable" namespace="dem" xtkschema="xtk:srcSchema">
<element autopk="true" autouuid="true" dataSource="nms:extAccount:ffda" label="Sample Table"
        name="sampleTable">
    <attribute label="Test Col 1" length="255" name="testcol1" type="string"/>
    <attribute label="Test Col 2" length="255" name="testcol2" type="string"/>
</element>
</srcSchema>
"""

# The SDK splits "user/password" on "/", so neither may contain one (reference §9).
USER, PASSWORD = "sdk-integration", "Sdk-pass:1;x"
EXPIRY_USER, EXPIRY_PASSWORD = "sdk-expiring", "Sdk-pass:2;y"

SCRIPT_TIMEOUT_S = 240  # whole node run: require() alone takes ~1.5 s, each call is capped at 30 s
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


# --- set-up ---------------------------------------------------------------------------------

def _user_with_ingest_rights(username: str, password: str):
    user = get_user_model().objects.create_user(username=username, password=password)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="staging",
                                   codename__in=["ingest", "write_cloud", "change_option", "view_schema"])
    )
    return user


def _sample_schema_staged():
    schema = services.schema_create(user=SYSTEM, source=SAMPLE_SCHEMA)
    services.structure_update(user=SYSTEM, schema=schema)
    schema = services.schema_set_auto_stg(user=SYSTEM, schema=schema, enabled=True)
    services.structure_update(user=SYSTEM, schema=schema)
    return schema


def _linked_schemas(user):
    """cus:contact links to cus:company (the query tests' schemas), for a query through the link."""
    from staging.records import records_from_json
    from tests.staging.test_query_links import COMPANIES, COMPANY, CONTACT, CONTACTS

    for source in (COMPANY, CONTACT):
        services.structure_update(user=SYSTEM, schema=services.schema_create(user=SYSTEM, source=source))
    services.records_write(schema_id="cus:company", user=user, records=records_from_json(COMPANIES))
    services.records_write(schema_id="cus:contact", user=user, records=records_from_json(CONTACTS))


def _expire_sessions_of(user) -> int:
    from staging.soap_sessions import SoapSession  # the SOAP layer's session store

    return SoapSession.objects.filter(user=user).update(expires_at=timezone.now() - timedelta(seconds=5))


# --- running node ---------------------------------------------------------------------------

class NodeRun:
    """The script's steps by name, plus everything it printed (for failure messages)."""

    def __init__(self):
        self.steps: dict[str, dict] = {}
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.returncode: int | None = None
        self.timed_out = False
        self.expiry_error: str | None = None

    def transcript(self) -> str:
        return (
            f"node exit code: {self.returncode}{' (killed after timeout)' if self.timed_out else ''}\n"
            "--- stdout ---\n" + "\n".join(self.stdout) + "\n--- stderr ---\n" + "".join(self.stderr)
        )


def _pump(stream, sink):
    for line in stream:
        sink(line)
    sink(None)


def run_conformance(node: str, sdk_dir, url: str, api_token: str, on_expiry_ready) -> NodeRun:
    """Run conformance.js; call `on_expiry_ready()` when it asks, then let it go on."""
    run = NodeRun()
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"  # axios honours proxy variables
    process = subprocess.Popen(
        [node, str(sdk_dir / "conformance.js"), url, USER, PASSWORD, EXPIRY_USER, EXPIRY_PASSWORD, api_token],
        cwd=sdk_dir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, encoding="utf-8",
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines.put), daemon=True).start()
    stderr_done = threading.Event()
    threading.Thread(
        target=_pump, args=(process.stderr, lambda s: stderr_done.set() if s is None else run.stderr.append(s)),
        daemon=True,
    ).start()
    deadline = time.monotonic() + SCRIPT_TIMEOUT_S
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                run.timed_out = True
                break
            if line is None:
                break
            if time.monotonic() > deadline:
                run.timed_out = True
                break
            line = line.rstrip("\n")
            run.stdout.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue  # stray output (e.g. an SDK warning): kept in the transcript only
            run.steps[record["step"]] = record
            if record["step"] == "expiry_ready":
                try:
                    on_expiry_ready()
                except Exception as ex:  # reported by the expiry assertion; node still runs to the end
                    run.expiry_error = f"{type(ex).__name__}: {ex}"
                process.stdin.write("expired\n")
                process.stdin.flush()
    finally:
        if process.poll() is None and not run.timed_out:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                run.timed_out = True
        if process.poll() is None:
            process.kill()  # only the node process this test started
        run.returncode = process.wait(timeout=30)
        stderr_done.wait(timeout=10)
        process.stdin.close()
    return run


# --- reading the databases ------------------------------------------------------------------

STAGED_FIELDS = {
    "seq": ddl.COL_SEQ, "delete": ddl.COL_DELETE, "operation": ddl.COL_OPERATION, "columns": ddl.COL_COLUMNS,
    "status": ddl.COL_STATUS, "version": ddl.COL_VERSION,
}


def _select(alias: str, table: str, fields: dict[str, str]) -> list[dict]:
    # PostgreSQL folds the names to lower case (ddl.quote), SQLite keeps them: quote does both.
    connection = connections[alias]
    vendor = connection.vendor
    columns = ", ".join(ddl.quote(column, vendor) for column in fields.values())
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {ddl.quote(table, vendor)}")
        return [dict(zip(fields, row)) for row in cursor.fetchall()]


def _business_fields(description) -> dict[str, str]:
    return {a.name: a.sql_name for a in description.attributes}


def staged_rows(description) -> dict[str, dict]:
    rows = _select(ddl.LOCAL, description.staging_table, {**_business_fields(description), **STAGED_FIELDS})
    return {row["id"]: row for row in rows}


def cloud_rows(description) -> dict[str, dict]:
    alias = ddl.table_alias(description)
    return {row["id"]: row for row in _select(alias, description.sql_table, _business_fields(description))}


# --- the test -------------------------------------------------------------------------------

@pytest.mark.django_db(databases=BOTH_DATABASES, transaction=True)
def test_adobe_sdk_drives_logon_ingest_ingestext_write_faults_and_logoff(
    node_path, sdk_dir, live_server, settings, subtests
):
    # live_server listens on 127.0.0.1; "localhost" may resolve to ::1 first in node.
    url = live_server.url.replace("://localhost:", "://127.0.0.1:")
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1"]
    settings.SOAP_ALLOW_USER_PASSWORD = True  # for the "login/password" session-token mode
    user = _user_with_ingest_rights(USER, PASSWORD)
    api_token = make_api_token(user)
    options_seed()
    expiring_user = _user_with_ingest_rights(EXPIRY_USER, EXPIRY_PASSWORD)
    schema = _sample_schema_staged()
    description = schema.description
    _linked_schemas(user)
    expired = []

    run = run_conformance(node_path, sdk_dir, url, api_token,
                          lambda: expired.append(_expire_sessions_of(expiring_user)))
    print(run.transcript())  # shown by pytest when anything below fails
    steps = run.steps
    staged = staged_rows(description)
    staged_by_testcol1 = {row["testcol1"]: row for row in staged.values()}
    print("--- staged rows ---", *staged.values(), sep="\n")

    def outcome(name: str) -> dict:
        assert name in steps, f"node never reported step {name!r}\n{run.transcript()}"
        return steps[name]

    def returned(name: str):
        record = outcome(name)
        assert record["ok"], f"{name} threw: {json.dumps(record.get('error'), indent=2)}"
        return record["value"]

    def thrown(name: str) -> dict:
        record = outcome(name)
        assert not record["ok"], f"{name} should have thrown, returned {record.get('value')!r}"
        return record["error"]

    with subtests.test(msg="node ran every step and exited 0"):
        assert not run.timed_out and run.returncode == 0 and "done" in steps, run.transcript()
        assert steps["sdk"]["value"]["version"] == "1.2.0"

    with subtests.test(msg="logon"):
        value = returned("logon")
        assert value["isLogged"] is True
        assert value["operator"] == USER

    with subtests.test(msg="ingest, JSON form: a generated UUID comes back and is the staged row's id"):
        value = returned("ingest_json")
        assert isinstance(value, str) and UUID_RE.match(value), value
        row = staged.get(value) or staged.get(value.lower()) or staged.get(value.upper())
        assert row is not None, f"no staged row with id {value}: {sorted(staged)}"
        assert (row["testcol1"], row["testcol2"]) == ("json1", "json2")
        assert row["status"] == ddl.STATUS_PENDING

    with subtests.test(msg="ingest, XML form with _key=@id: no UUID, the caller's id is stored"):
        assert returned("ingest_xml_key") in ("", None)
        assert "ABC12345" in staged, sorted(staged)

    with subtests.test(msg="ingestExt update of a staged key: null, changed in place, absent attribute kept"):
        assert returned("ingest_ext_update") is None
        row = staged["ABC12345"]
        assert (row["testcol1"], row["testcol2"]) == ("A", "B")  # testcol1 was not sent: not overwritten
        assert row["status"] == ddl.STATUS_PENDING
        assert not row["delete"]
        # The sync must still write testcol1 (from the Ingest) as well as testcol2 (from the update).
        assert {"testcol1", "testcol2"} <= set(row["columns"].split(",")), row
        # In place: still one row for the key, and it keeps its place before rows staged after it.
        assert row["seq"] < staged["DEL00001"]["seq"], (row, staged.get("DEL00001"))

    with subtests.test(msg="ingestExt _operation=delete of a staged key: the staged row becomes a delete"):
        assert returned("ingest_delete_setup") in ("", None)
        assert returned("ingest_ext_delete") is None
        row = staged["DEL00001"]
        assert row["delete"] in (1, True) and row["operation"] == "delete", row
        assert row["status"] == ddl.STATUS_PENDING

    with subtests.test(msg="collection: 'uuid1,uuid2,' with an empty entry for the supplied id"):
        value = returned("ingest_collection")
        parts = value.split(",")
        assert len(parts) == 3 and UUID_RE.match(parts[0]) and UUID_RE.match(parts[1]) and parts[2] == "", value
        assert parts[0] != parts[1]
        assert staged_by_testcol1["coll1"]["id"].lower() == parts[0].lower()
        assert staged_by_testcol1["coll2"]["id"].lower() == parts[1].lower()
        assert staged_by_testcol1["coll2"]["testcol2"] == "x"
        assert staged["COLL0003"]["testcol1"] == "coll3"

    with subtests.test(msg="write: straight to the cloud table, not staged"):
        assert returned("write") is None
        cloud = cloud_rows(description)
        assert "W1" in cloud, f"cloud table rows: {cloud}"
        assert cloud["W1"]["testcol1"] == "w"
        assert "W1" not in staged

    with subtests.test(msg="fault: unknown attribute is a CampaignException 500 with SOP-330011, nothing stored"):
        error = thrown("fault_unknown_attribute")
        assert error["name"] == "CampaignException", error
        assert error["statusCode"] == 500, error
        assert "SOP-330011" in (error["detail"] or ""), error
        assert "nosuchattr" in error["detail"] and "boom" in error["detail"], "name the attribute and value"
        assert "never stored" not in staged_by_testcol1
        assert UUID_RE.match(returned("ingest_after_fault") or ""), "the session should survive a fault"

    with subtests.test(msg="queryDef select: where (OR), orderBy desc, lineCount/startLine, alias"):
        assert returned("query_select_paged") == {"sampleTableStg": [
            {"testcol1": "coll2", "second": "x"}, {"testcol1": "coll1", "second": ""}]}

    with subtests.test(msg="queryDef get on the source schema reads the cloud table"):
        assert returned("query_get") == {"id": "W1", "upper": "W"}

    with subtests.test(msg="queryDef getIfExists miss is null, get miss is a CampaignException"):
        assert returned("query_get_if_exists_miss") is None
        error = thrown("query_get_miss")
        assert error["statusCode"] == 500 and "CST-404000" in (error["detail"] or ""), error

    with subtests.test(msg="queryDef count on the staging schema, with its technical @delete"):
        # json1, A, coll1, coll2, coll3, after fault; the staged delete of DEL00001 is left out.
        assert returned("query_count") == {"count": "6"}

    with subtests.test(msg="queryDef select with no match is an empty array"):
        assert returned("query_empty_select") == {"sampleTableStg": []}

    with subtests.test(msg="queryDef with an unknown attribute is a fault naming it"):
        error = thrown("query_bad_attribute")
        assert error["statusCode"] == 500 and "'@nosuch' is not an attribute" in (error["detail"] or ""), error

    with subtests.test(msg="queryDef through a link: the target's attributes nest under the link"):
        assert returned("query_link") == {"contact": [
            {"email": "ann@acme.com", "company": {"name": "Acme"}},
            {"email": "carl@acme.com", "company": {"name": "Acme"}}]}

    with subtests.test(msg="expired session: the SDK's 401 SDK-000012, nothing stored"):
        assert UUID_RE.match(returned("expiry_logon") or "")
        assert run.expiry_error is None, run.expiry_error
        assert expired and expired[0] >= 1, f"no session of {EXPIRY_USER} to expire: {expired}"
        error = thrown("session_expired")
        assert (error["statusCode"], error["errorCode"]) == (401, "SDK-000012"), error
        assert "after expiry" not in staged_by_testcol1

    with subtests.test(msg="logoff: the session is revoked, its tokens are refused afterwards"):
        assert returned("logoff") == {"isLogged": False}
        from staging.soap_sessions import SoapSession

        sessions = SoapSession.objects.filter(user=user)
        assert sessions.exists() and not sessions.filter(revoked_at__isnull=True).exists()
        error = thrown("token_after_logoff")
        assert (error["statusCode"], error["errorCode"]) == (401, "SDK-000012"), error
        assert "after logoff" not in staged_by_testcol1

    with subtests.test(msg="getSchema: the compiled staging schema with its attributes and types"):
        value = returned("get_schema")
        assert (value["namespace"], value["name"], value["label"]) == ("dem", "sampleTableStg",
                                                                       "Sample Table (Staging)")
        assert value["attributes"] == [["id", "uuid"], ["testcol1", "string"], ["testcol2", "string"]]

    with subtests.test(msg="application.getSchema: the SDK's schema object, root, children and key"):
        assert returned("application_get_schema") == {
            "id": "dem:sampleTable", "rootLabel": "Sample Table", "mappingType": "sql",
            "children": ["@id", "@testcol1", "@testcol2"], "keyFields": ["@id"]}

    with subtests.test(msg="getSchema of an unknown schema is null, not an error"):
        assert returned("get_schema_unknown") is None

    with subtests.test(msg="getOption / setOption"):
        assert returned("get_option") == Option.objects.get(name="XtkDatabaseId").string_value
        assert returned("get_option_unknown") is None
        assert returned("set_option") == "set by the SDK"
        option = Option.objects.get(name="ConformanceOption")
        assert (option.data_type, option.string_value) == (6, "set by the SDK")

    with subtests.test(msg="test() and ping()"):
        value = returned("test")
        assert (value["status"], value["build"], value["instance"]) == ("OK", "9999", "campaign-staging")
        value = returned("ping")
        assert value["status"] == "OK" and re.match(r"\d{4}-\d\d-\d\d ", value["timestamp"]), value

    with subtests.test(msg="BearerTokenLogon with an API token: a session, then logoff"):
        value = returned("bearer_logon")
        assert (value["isLogged"], value["operator"]) == (True, USER)
        assert UUID_RE.match(value["uuid"])
        assert returned("bearer_logoff") == {"isLogged": False}
        error = thrown("bearer_logon_forged")
        assert error["statusCode"] == 500 and "Invalid bearer token" in (error["detail"] or ""), error

    with subtests.test(msg="IMS-style bearer: no logon call, Authorization on every call"):
        value = returned("ims_bearer")
        assert (value["isLogged"], value["login"], value["build"]) == (True, USER, "9999")
        assert UUID_RE.match(value["uuid"])
        error = thrown("ims_bearer_forged")
        assert (error["statusCode"], error["errorCode"]) == (401, "SDK-000012"), error

    with subtests.test(msg="login/password as the session token (allowed for this run)"):
        assert UUID_RE.match(returned("session_token_user_password") or "")
        error = thrown("session_token_user_password_forged")
        assert (error["statusCode"], error["errorCode"]) == (401, "SDK-000012"), error

    with subtests.test(msg="nothing else was staged"):
        assert sorted(staged_by_testcol1, key=str) == sorted(
            ["json1", "A", "doomed", "coll1", "coll2", "coll3", "after fault", "before expiry", "bearer",
             "ims bearer", "user/password"], key=str
        ), staged
