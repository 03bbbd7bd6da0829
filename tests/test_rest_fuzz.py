"""Schemathesis against the REST API's own OpenAPI document, on one gunicorn worker.

Every operation of /api/schema/ gets generated requests (valid and invalid) with an API token; each
answer must not be a server error, must have a status the document lists for the operation, and a
body that matches the document's schema for that status. The run is seeded and bounded (a couple of
minutes); FUZZ_EXAMPLES raises the number of cases per operation and FUZZ_SEED changes the seed
(docs/testing.md). Seeded objects (a staged schema with rows, a service, a sync run) let generated
path parameters hit real objects some of the time.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User

from staging import services
from staging.models import SyncRun
from staging.records import RecordInput
from subscriptions.models import Service
from tests.api_tokens import api_token
from tests.conftest import BOTH_DATABASES
from tests.site import start_one_worker_site, stop_one_worker_site
from tests.soap.conftest import SAMPLE_SCHEMA
from campaignsite.permissions import SYSTEM

pytestmark = [pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES), pytest.mark.slow]

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20261130"))
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"

# Path parameters drawn from the seeded objects half of the time, so operations reach real objects.
CONFIG = """
[dictionaries.schema_ids]
values = ["dem:sampleTable", "dem:sampleTableStg", "dem:nothing"]

[dictionaries.service_names]
values = ["newsletter"]

[dictionaries.run_ids]
values = [{run_id}]

[parameters]
"path.schema_id" = {{ dictionary = "schema_ids", probability = 0.5 }}
"path.name" = {{ dictionary = "service_names", probability = 0.5 }}
"path.run_id" = {{ dictionary = "run_ids", probability = 0.5 }}
"""


def seed_objects() -> tuple[User, SyncRun]:
    user = User.objects.create_user("fuzzer", password="fuzz-pass-1")
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["staging", "subscriptions"]))
    user = User.objects.get(pk=user.pk)  # permission cache empty
    schema = services.schema_create(source=SAMPLE_SCHEMA, user=SYSTEM)
    services.structure_update(schema=schema, user=SYSTEM)
    services.records_ingest(schema_id="dem:sampleTableStg", user=user,
                            records=[RecordInput({"testcol1": f"row {i}"}, None, None) for i in range(3)])
    Service.objects.create(name="newsletter", label="Newsletter")
    run = SyncRun.objects.create(schema="dem:sampleTable", trigger=SyncRun.Trigger.API)
    return user, run


@pytest.fixture
def site(tmp_path):
    site = start_one_worker_site(tmp_path)
    yield site
    stop_one_worker_site(site)


def test_schemathesis_finds_no_server_error_and_no_answer_the_document_does_not_describe(site, tmp_path):
    user, run = seed_objects()
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(run_id=run.pk))
    worker = site.worker_pid()
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "--no-color", "--config-file", str(config), "run",
        f"{site.url}/api/schema/", "--header", f"Authorization: Token {api_token(user)}",
        "--checks", CHECKS, "--max-examples", str(FUZZ_EXAMPLES), "--seed", str(FUZZ_SEED),
        "--workers", "1", "--phases", "examples,coverage,fuzzing", "--request-timeout", "60",
        "--generation-database", "none", "--suppress-health-check", "all",
    ]

    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                            env={**os.environ, "SCHEMATHESIS_HOOKS": ""})

    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-5_000:]
    assert "Traceback" not in site.log() and "Internal Server Error" not in site.log(), site.log()[-5_000:]
    assert site.worker_pid() == worker
