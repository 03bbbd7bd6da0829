"""Fixtures for ingestion tests: staged schemas built through the real services, users with permissions."""

import pytest
from django.contrib.auth.models import Permission, User

from campaignsite.permissions import SYSTEM
from staging import services
from staging.records import RecordInput
from staging.selectors import staged_rows

# The seed's sample table (reference/campaign-v8-behaviour.md §1.3), staging turned on below.
SAMPLE_SOURCE = """<srcSchema _cs="Sample Table (dem)" entitySchema="xtk:srcSchema" img="xtk:schema.png"
    label="Sample Table" mappingType="sql" name="sampleTable" namespace="dem" xtkschema="xtk:srcSchema">
  <element autopk="true" autouuid="true" dataSource="nms:extAccount:ffda" label="Sample Table" name="sampleTable">
    <attribute label="Test Col 1" length="255" name="testcol1" type="string"/>
    <attribute label="Test Col 2" length="255" name="testcol2" type="string"/>
  </element>
</srcSchema>"""

# Every supported type, a short string, an enumeration and a second key, for validation rules.
TYPED_SOURCE = """<srcSchema name="typed" namespace="dem" label="Typed">
  <enumeration name="color" basetype="string">
    <value name="red" value="R"/>
    <value name="green" value="G"/>
  </enumeration>
  <element name="typed" autopk="true" autouuid="true" autoStg="true">
    <key name="email"><keyfield xpath="@email"/></key>
    <attribute name="email" type="string" length="80"/>
    <attribute name="code" type="string" length="5"/>
    <attribute name="note" type="memo"/>
    <attribute name="flag" type="boolean"/>
    <attribute name="tiny" type="byte"/>
    <attribute name="small" type="short"/>
    <attribute name="count" type="long"/>
    <attribute name="big" type="int64"/>
    <attribute name="ratio" type="float"/>
    <attribute name="amount" type="double"/>
    <attribute name="born" type="date"/>
    <attribute name="seen" type="datetime"/>
    <attribute name="local" type="datetimenotz"/>
    <attribute name="opens" type="time"/>
    <attribute name="ref" type="uuid"/>
    <attribute name="color" type="string" enum="color"/>
  </element>
</srcSchema>"""


def make_user(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username)
    if codenames:
        user.user_permissions.add(*Permission.objects.filter(content_type__app_label="staging",
                                                             codename__in=codenames))
    return User.objects.get(pk=user.pk)  # fresh instance: permission cache empty


def staged_schema(source: str):
    schema = services.schema_create(user=SYSTEM, source=source)
    schema = services.schema_set_auto_stg(user=SYSTEM, schema=schema, enabled=True)
    services.structure_update(user=SYSTEM, schema=schema)
    return schema


def record(values: dict | None = None, *, key: str | None = None, op: str | None = None, **kw) -> RecordInput:
    from staging.records import parse_key

    merged = {**(values or {}), **kw}
    return RecordInput(values={k: v for k, v in merged.items()}, key=parse_key(key) if key else None,
                       operation=op)


@pytest.fixture
def sample():
    return staged_schema(SAMPLE_SOURCE)


@pytest.fixture
def typed():
    return staged_schema(TYPED_SOURCE)


@pytest.fixture
def ingester():
    return make_user("ingester", "ingest")


@pytest.fixture
def writer():
    return make_user("writer", "write_cloud")


@pytest.fixture
def nobody():
    return make_user("nobody")


def rows_of(schema, **filters) -> list[dict]:
    return staged_rows(schema, limit=10_000, **filters)
