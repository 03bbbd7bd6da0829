"""node and the pinned @adobe/acc-js-sdk for the SDK conformance test.

node_modules is not committed: it is installed from the committed package-lock.json with `npm ci`
(CI runs it too; here it happens once per session when the folder is missing or holds another SDK).
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail

SDK_DIR = Path(__file__).resolve().parent
SDK_PACKAGE = "@adobe/acc-js-sdk"
NODE_MIN_MAJOR = 20  # the SDK's "engines" field
NPM_CI_TIMEOUT_S = 600


def _pinned_version() -> str:
    return json.loads((SDK_DIR / "package.json").read_text(encoding="utf-8"))["dependencies"][SDK_PACKAGE]


def _installed_version() -> str | None:
    manifest = SDK_DIR / "node_modules" / SDK_PACKAGE / "package.json"
    if not manifest.exists():
        return None
    return json.loads(manifest.read_text(encoding="utf-8")).get("version")


@pytest.fixture(scope="session")
def node_path() -> str:
    node = shutil.which("node")
    if not node:
        skip_or_fail("node is not installed (the SDK conformance test runs Adobe's acc-js-sdk with node >= 20)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if not match or int(match.group(1)) < NODE_MIN_MAJOR:
        skip_or_fail(
            f"node {version or '(unknown version)'} is too old: @adobe/acc-js-sdk needs node >= {NODE_MIN_MAJOR}"
        )
    return node


@pytest.fixture(scope="session")
def sdk_dir(node_path) -> Path:
    """tests/sdk with the pinned SDK installed in node_modules."""
    pinned = _pinned_version()
    if _installed_version() != pinned:
        npm = shutil.which("npm")
        if not npm:
            skip_or_fail(f"npm is not installed, and tests/sdk/node_modules lacks {SDK_PACKAGE} {pinned}")
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=SDK_DIR, capture_output=True, text=True,
            timeout=NPM_CI_TIMEOUT_S,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci in {SDK_DIR} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}",
                        pytrace=False)
        if _installed_version() != pinned:
            pytest.fail(f"npm ci installed {SDK_PACKAGE} {_installed_version()}, not the pinned {pinned}",
                        pytrace=False)
    return SDK_DIR
