"""`manage.py serve` (the end of `make run`) for real: gunicorn and the django-q2 cluster as processes,
HTTP over a socket, a signal to stop. Runs against a pair of throw-away SQLite databases.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _live_processes_in_group(pgid: int) -> list[int]:
    """Processes (zombies excepted) whose process group is `pgid`, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # ended while we looked
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            found.append(int(entry))
    return found


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@pytest.fixture
def site_env(tmp_path) -> dict[str, str]:
    """Environment for a site on two fresh SQLite files, migrated as `make run` does."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "HOST", "PORT", "SECRET_KEY")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'local.sqlite3'}",
        CLOUD_DATABASE_URL=f"sqlite:///{tmp_path / 'cloud.sqlite3'}",
        DEBUG="1",
        WEB_WORKERS="2",
        PYTHONUNBUFFERED="1",
    )
    for args in (["migrate"], ["migrate", "--database", "cloud"], ["createcachetable"]):
        subprocess.run(
            [sys.executable, "manage.py", *args, "--verbosity", "0"], cwd=BASE_DIR, env=env, check=True, timeout=180
        )
    return env


@pytest.fixture
def serve(site_env, tmp_path):
    """Start `manage.py serve` on a free port; yields (process, base URL, log path, child pids)."""
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=BASE_DIR, env=site_env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while _status(f"{url}/admin/login/") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve did not answer on {url}:\n{log.read_text()}")
            time.sleep(0.3)
        pids = {name: int(pid) for name, pid in re.findall(r"(gunicorn|qcluster) pid (\d+)", log.read_text())}
        assert set(pids) == {"gunicorn", "qcluster"}, log.read_text()
        yield process, url, log, pids
    finally:
        if process.poll() is None:
            process.kill()  # supervisor gone: its children get SIGTERM through PR_SET_PDEATHSIG
            process.wait()


def _assert_groups_gone(pids: dict[str, int]) -> None:
    deadline = time.monotonic() + 10
    while any(_live_processes_in_group(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for name, pid in pids.items():
        assert _live_processes_in_group(pid) == [], f"{name} (pid {pid}) or one of its workers still runs"


def test_serve_answers_admin_and_static_files_then_ctrl_c_stops_both(serve):
    process, url, log, pids = serve

    assert _status(f"{url}/admin/login/") == 200
    assert _status(f"{url}/static/admin/css/base.css") == 200
    assert "/nl/jsp/soaprouter.jsp" in log.read_text()
    assert "/api/docs/" in log.read_text()
    cluster_started = time.monotonic() + 30
    while "running." not in log.read_text() and time.monotonic() < cluster_started:
        time.sleep(0.2)
    assert re.search(r"Q Cluster .* running\.", log.read_text()), log.read_text()

    process.send_signal(signal.SIGINT)
    returncode = process.wait(timeout=60)

    assert returncode == 0, log.read_text()
    assert "Stopped." in log.read_text()
    _assert_groups_gone(pids)


def test_serve_stops_on_sigterm(serve):
    process, _url, log, pids = serve

    process.terminate()

    assert process.wait(timeout=60) == 0, log.read_text()
    _assert_groups_gone(pids)


def test_serve_stops_the_cluster_and_fails_when_gunicorn_dies(serve):
    process, _url, log, pids = serve

    os.kill(pids["gunicorn"], signal.SIGKILL)
    returncode = process.wait(timeout=60)

    assert returncode != 0
    assert "gunicorn exited with status -9" in log.read_text()
    _assert_groups_gone(pids)
