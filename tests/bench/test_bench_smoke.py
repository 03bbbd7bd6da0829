"""The ingest benchmark still runs end to end (tiny size; timings are not asserted)."""

import pytest

from bench import ingest_bench
from tests.conftest import BOTH_DATABASES


@pytest.mark.django_db(databases=BOTH_DATABASES)
def test_the_ingest_benchmark_runs_every_path_with_200_records():
    results = ingest_bench.run(200, http=True)
    assert [label for label, _ in results] == [
        "raw executemany", "SOAP collection (service)", "SOAP collection (router)", "REST JSON"]
    assert all(seconds > 0 for _, seconds in results)
    assert "vs raw" in ingest_bench.report(200, results, "sqlite")
