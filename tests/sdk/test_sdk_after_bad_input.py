"""Adobe's SDK after the bad-input corpus, on the same single gunicorn worker: the corpus of
tests/soap/test_bad_then_good.py goes first, then an ordinary SDK integration must run unharmed."""

import json
import os
import subprocess

import pytest

from tests.conftest import BOTH_DATABASES
from tests.site import start_one_worker_site, stop_one_worker_site
from tests.soap.test_bad_then_good import CORPUS, MAX_BYTES
from tests.soap.traffic import LOGIN, PASSWORD, Traffic, row_counts, site_setup

pytestmark = [pytest.mark.node, pytest.mark.slow,
              pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)]


@pytest.fixture
def site(tmp_path):
    server = start_one_worker_site(tmp_path, INGEST_MAX_BYTES=str(MAX_BYTES))
    yield server
    stop_one_worker_site(server)


def test_the_sdk_works_on_a_worker_that_has_seen_every_bad_input(site, node_path, sdk_dir):
    schema, api_token = site_setup()
    traffic = Traffic(site.url, schema, api_token)
    worker = site.worker_pid()
    for bad in CORPUS:
        assert traffic.send(bad.build(traffic.session)).status == bad.status, bad.name
    assert row_counts(schema) == traffic.expected

    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    run = subprocess.run([node_path, str(sdk_dir / "after_bad_input.js"), site.url, LOGIN, PASSWORD],
                         cwd=sdk_dir, env=env, capture_output=True, text=True, timeout=180)

    steps = {r["step"]: r for r in map(json.loads, filter(None, run.stdout.splitlines()))}
    assert run.returncode == 0, run.stdout + run.stderr
    assert list(steps) == ["logon", "ingest_json", "ingest_xml", "ingest_ext", "write", "logoff"], run.stdout
    failed = {name: r["error"] for name, r in steps.items() if not r["ok"]}
    assert failed == {}, failed
    assert steps["logon"]["value"] is True and steps["logoff"]["value"] is False
    staged, cloud = traffic.expected
    assert row_counts(schema) == (staged + 2, cloud + 1)  # the IngestExt updated the XML one in place
    assert site.worker_pid() == worker
