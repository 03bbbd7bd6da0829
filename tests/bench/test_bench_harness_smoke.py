"""`make bench`'s harness still runs every benchmark end to end: bench/run.py --quick, with tiny
sizes, in a subprocess on fresh SQLite files (a real server, real HTTP). Timings are not asserted."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("Batch ingest: SOAP collection", "Batch ingest: REST JSON", "django-import-export (bulk, tuned)",
            "django-import-export (defaults", "Unitary Ingest: SOAP", "Unitary Ingest: latency p50 / p99",
            "Sync", "Ingest → cloud", "Subscriptions")


@pytest.mark.slow
def test_the_bench_harness_prints_one_table_with_every_figure_and_writes_it_as_markdown(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("BENCH_DATABASE_URL", "BENCH_CLOUD_DATABASE_URL", "DATABASE_URL", "CLOUD_DATABASE_URL",
                        "DJANGO_SETTINGS_MODULE")}
    out = tmp_path / "latest.md"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--work-dir", str(tmp_path / "work"), "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("| Figure | Measured | Baseline (same run) | Ratio | Target | Met? |") == 1
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "Figure" not in line]
    for section in SECTIONS:
        assert any(section in row for row in rows), f"no row for {section!r} in:\n{done.stdout}"
    assert out.read_text(encoding="utf-8").strip() == done.stdout.strip()
