"""Big calls take the bulk write (COPY on PostgreSQL from services.COPY_MIN_ROWS staged rows on): the
values they store must be exactly those a one-record call stores, and a refused key must still be a
database IntegrityError (so the caller answers a Conflict and nothing is written)."""

import pytest
from django.db import IntegrityError, connections, transaction

from staging import records as rec
from staging import services
from tests.conftest import BOTH_DATABASES
from tests.staging.conftest import record, rows_of

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

TYPED = "dem:typedStg"
EVERY_TYPE = dict(
    flag="true", tiny="-128", small="32767", count="-5", big="9223372036854775807", ratio="1.5",
    amount="-2.25", born="2026-11-22", seen="2026-11-22T12:00:00+02:00", local="2026-11-22T12:52:27+02:00",
    opens="08:30:00", ref="E1E7C8B3-6F79-44DA-A72D-49ED0F73DB2C", color="green", note="é" * 300, code=None,
)


def test_a_big_call_stores_every_type_exactly_as_a_one_record_call(typed, ingester):
    services.records_ingest(schema_id=TYPED, user=ingester, records=[record(email="alone", **EVERY_TYPE)])
    crowd = [record(email=f"crowd{i}", **EVERY_TYPE) for i in range(services.COPY_MIN_ROWS + 50)]
    services.records_ingest(schema_id=TYPED, user=ingester, records=crowd)

    stored = {row["values"]["email"]: row["values"] for row in rows_of(typed)}
    alone = {k: v for k, v in stored.pop("alone").items() if k not in ("id", "email")}
    assert len(stored) == len(crowd)
    different = [email for email, values in stored.items()
                 if {k: v for k, v in values.items() if k not in ("id", "email")} != alone]
    assert different == []


def test_a_key_the_unique_index_refuses_in_a_big_write_is_an_integrity_error(sample, ingester):
    schema = services.staging_schema_get(schema_id="dem:sampleTableStg")
    records = [record(id=f"K{i:04d}", testcol1="x") for i in range(services.COPY_MIN_ROWS + 10)]
    services.records_ingest(schema_id="dem:sampleTableStg", user=ingester, records=records[:1])
    rows = rec.validated_rows(schema.description, records, mode=rec.INGEST)
    table = services._staging_table(schema)

    with pytest.raises(IntegrityError), transaction.atomic(using="default"), connections["default"].cursor() as cursor:
        services._stage_inserts(cursor, table, rows, table.now())  # K0000 is staged already

    assert [row["values"]["id"] for row in rows_of(sample)] == ["K0000"]
