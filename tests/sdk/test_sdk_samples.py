"""Adobe's own SDK samples, run unchanged against the server.

The samples are copied at test time from the installed @adobe/acc-js-sdk package (so they are
always the pinned release's), with only the schema names they use rewritten to schemas this server
has. They read the server from ACC_URL/ACC_USER/ACC_PASSWORD (their utils.js) and print each sample's
results; a failing sample prints "Failed to run sample:" and the exception, which the test reads
back section by section.
"""

import os
import re
import shutil
import subprocess

import pytest
from django.contrib.auth import get_user_model
from django.db import connections

from staging import ddl, services
from staging.options import options_seed
from tests.conftest import BOTH_DATABASES
from campaignsite.permissions import SYSTEM

pytestmark = [pytest.mark.node, pytest.mark.slow, pytest.mark.django_db(databases=BOTH_DATABASES, transaction=True)]

PACKAGE = "node_modules/@adobe/acc-js-sdk"
USER, PASSWORD = "sample-admin", "Sample-pass:1;z"  # the SDK splits "user/password" on "/"
SAMPLE_TIMEOUT_S = 180
SECTION = re.compile(r"^Sample \.+ (.+)$", re.MULTILINE)
FAILED = "Failed to run sample:"

# A schema of ours under the name of the Campaign schema sample 001 queries (same attribute names).
DELIVERY_MAPPING = """\
<srcSchema namespace="dem" name="deliveryMapping" label="Target mappings" xtkschema="xtk:srcSchema">
  <element name="deliveryMapping" label="Target mappings" autopk="true" autouuid="true">
    <attribute name="name" label="Internal name" type="string" length="64"/>
    <attribute name="label" label="Label" type="string" length="128"/>
    <attribute name="schema" label="Target schema" type="string" length="64"/>
    <element name="storage" label="Storage">
      <attribute name="exclusionType" label="Exclusion type" type="byte"/>
    </element>
  </element>
</srcSchema>
"""

# Per sample: the schema names rewritten, and per section title the output lines expected.
SAMPLES = {
    "000 - basics - logon.js": ({}, {
        "Display the SDK version": [r">> ACC Javascript SDK version 1\.2\.0"],
        "Log on and log off": [r">> Is logged\?  'true'", r">> Instance name 'campaign-staging'",
                               r">> Build number '9999'"],
        "Test if a package is installed": [r">> Installed packages 'nms:core'",
                                           r">> Is the FDA package installed\? -> false"],
        "Information about the current user": [rf">> Current operator login '{USER}'",
                                               r">> Does the current user have admin rights\? 'true'"],
        "Getting and setting options": [r">> XtkDatabaseId option 'u[0-9A-F]{40}'",
                                        r">> XtkDatabaseId option \(from cache\) 'u[0-9A-F]{40}'",
                                        r">> ACC_JS_SDK option \(from cache\) 'ACC Javascript SDK version 1\.2\.0 on "],
        "Getting the current server time": [r">> Server timestamp \(UTC\): \w{3}, \d\d \w{3} \d{4}"],
        "ServerInfo structure": [r'>> Server info: \{.*"buildNumber":"9999"'],
        "UserInfo structure": [rf'>> User info: \{{.*"login":"{USER}"'],
    }),
    "001 - basics - queries.js": ({"nms:deliveryMapping": "dem:deliveryMapping"}, {
        "Query a single record": [r'>> mapRecipient: \{.*"name":"mapRecipient"'],
        "Query a set of records": [r'>> mappings: \{"deliveryMapping":\['],
        "Query a single record (which may not exist)": [r">> mapNotFound: null"],
        "Query and pagination": [r">> mappings \(page 1\): ", r">> mappings \(page 2\): "],
        # Sub-element paths nest in the answer; `analyze` is accepted (no enumeration here to name).
        "Query analyze option": [r'>> Recipient target mapping without the analyze flag: \{"storage":\{"exclusionType":"0"\}'],
        "Query a single record (again)": [
            r'>> Recipient target mapping without aliases: \{"storage":\{"exclusionType":"0"\}',
            r'>> Recipient target mapping with an alias: \{.*"exclusionType":"0"'],
    }),
    "002 - basics - schemas.js": ({"nms:rtEvent": "nms:recipient"}, {
        "Get a schema in JSON form": [r'>> client\.getSchema \(current representation\) : \{.*"name":"option"'],
        "Get a schema in XML form": [r">> client\.getSchema \(xml\) : <schema .*name=\"option\""],
        "Get a source schema in JSON form": [r'>> client\.getEntityIfMoreRecent : \{.*"name":"recipient"'],
        "Get a schema, returning a JavaScript object": [
            r">> id: nms:recipient", r">> namespace: nms", r">> name: recipient", r">> root: Recipients",
            r"Gender \(attribute=true name='@gender' type='byte'\)"],
    }),
    "009 - basics - health.js": ({}, {
        "Testing if the redirection server is up (/r/test)": [r'>> Result: \{"status":"OK".*"build":"9999"'],
        "Calling the 'ping' JSP": [r'>> Result: \{"status":"OK","timestamp":"\d{4}-'],
        "Calling the Message Center ping API": [r"Message Center not insalled"],
    }),
}

# Sections that need what this server does not offer, and why; their output is not asserted.
NOT_EXPECTED = {
    "Display the outbound IP address (can be useful to troubleshoot IP whitelisting issues)":
        "calls https://api.db-ip.com, a third-party service, not the Campaign server",
    "Get enumeration values using a query": "queries xtk:enumValue through a link ([enum/@name])",
    "Select all fields of a query": "xtk:queryDef#SelectAll is not implemented",
    "Generate the SQL of a query": "xtk:queryDef#BuildQuery/BuildQueryEx are not implemented",
}


def _copy_sample(sdk_dir, work, name: str, rewrites: dict) -> None:
    """The sample and its utils.js under work/samples, and work/src pointing at the installed SDK's src."""
    package = sdk_dir / PACKAGE
    (work / "samples").mkdir(exist_ok=True)
    if not (work / "src").exists():
        (work / "src").symlink_to(package / "src", target_is_directory=True)
    shutil.copy(package / "samples" / "utils.js", work / "samples" / "utils.js")
    text = (package / "samples" / name).read_text(encoding="utf-8")
    for theirs, ours in rewrites.items():
        assert f'"{theirs}"' in text, f"{name} no longer uses the schema {theirs}"
        text = text.replace(f'"{theirs}"', f'"{ours}"')
    (work / "samples" / name).write_text(text, encoding="utf-8")


def _run_sample(node: str, work, name: str, url: str) -> str:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(ACC_URL=url, ACC_USER=USER, ACC_PASSWORD=PASSWORD, NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost")
    # stderr into stdout: on Linux node writes both synchronously to pipes, so a sample's error stays in
    # its own section.
    result = subprocess.run([node, str(work / "samples" / name)], cwd=work / "samples", env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=SAMPLE_TIMEOUT_S)
    return result.stdout


def _sections(output: str) -> dict[str, str]:
    starts = list(SECTION.finditer(output))
    sections: dict[str, str] = {}
    for i, m in enumerate(starts):
        title = m.group(1).strip()
        while title in sections:  # a sample may reuse a title: number the repeats
            title += " (again)"
        sections[title] = output[m.end(): starts[i + 1].start() if i + 1 < len(starts) else len(output)]
    return sections


def _add_mappings(names: list[str]) -> None:
    description = services.schema_get(schema_id="dem:deliveryMapping").description
    alias = ddl.table_alias(description)
    vendor = connections[alias].vendor
    columns = ", ".join(ddl.quote(description.attribute(a).sql_name, vendor) for a in ("id", "name", "label", "schema"))
    with connections[alias].cursor() as cursor:
        table = ddl.quote(description.sql_table, vendor)
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s)",
                           [(f"M{i}", name, name, "nms:recipient") for i, name in enumerate(names)])


@pytest.fixture
def sample_server(live_server, settings):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1"]
    get_user_model().objects.create_superuser(USER, password=PASSWORD)
    options_seed()
    services.builtin_schemas_load(user=SYSTEM)
    mapping = services.schema_create(source=DELIVERY_MAPPING, user=SYSTEM)
    services.structure_update(schema=mapping, user=SYSTEM)
    return live_server.url.replace("://localhost:", "://127.0.0.1:")


@pytest.mark.parametrize("name", [
    "000 - basics - logon.js",
    "001 - basics - queries.js",
    "002 - basics - schemas.js",
    "009 - basics - health.js",
])
def test_adobe_sample_runs_unchanged(node_path, sdk_dir, sample_server, tmp_path, name):
    rewrites, expected = SAMPLES[name]
    _copy_sample(sdk_dir, tmp_path, name, rewrites)
    if name.startswith("001"):
        _add_mappings(["mapRecipient", "mapA", "mapB", "mapC"])

    output = _run_sample(node_path, tmp_path, name, sample_server)
    print(output)  # shown when an assertion below fails
    sections = _sections(output)

    problems = [f"section {title!r} is missing from the output" for title in expected if title not in sections]
    for title, patterns in expected.items():
        text = sections.get(title, "")
        if FAILED in text:
            problems.append(f"{title!r} failed:\n{text}")
        problems += [f"{title!r}: no line matches {pattern!r}" for pattern in patterns
                     if title in sections and FAILED not in text and not re.search(pattern, text)]
    problems += [f"section {title!r} has no expectation" for title in set(sections) - set(expected) - set(NOT_EXPECTED)]
    assert not problems, "\n".join(problems)
