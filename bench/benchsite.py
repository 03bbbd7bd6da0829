"""Settings of the benchmark run (DJANGO_SETTINGS_MODULE=bench.benchsite): the product's settings plus
what only the benchmarks need, so nothing bench-only reaches the product's INSTALLED_APPS or URLs.

- `import_export` and this `bench` app, whose throwaway model `bench.models.ImportedSampleRow` is what
  django-import-export imports into (bench/import_export_bench.py);
- `bench.urls`: the product's URLs plus one trivial view, the floor the unitary Ingest is compared to.
"""

from campaignsite.settings import *  # noqa: F401,F403
from campaignsite.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "import_export", "bench"]
ROOT_URLCONF = "bench.urls"
