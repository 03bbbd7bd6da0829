"""The sync benchmark still runs end to end (tiny sizes; timings are not asserted)."""

import pytest

from bench import sync_bench
from tests.conftest import BOTH_DATABASES


@pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)
def test_the_sync_benchmark_measures_raw_sync_and_peak_rss_with_tiny_sizes():
    result = sync_bench.run(300, batch_size=50)
    rss = sync_bench.peak_rss([100, 200], batch_size=50)  # fresh child processes on the test databases

    assert result["raw"] > 0 and result["sync"] > 0
    assert [r["rows"] for r in rss] == [100, 200] and all(r["peak_kb"] >= r["startup_kb"] > 0 for r in rss)
    text = sync_bench.report(result, rss)
    assert "vs raw" in text and "peak MB" in text
