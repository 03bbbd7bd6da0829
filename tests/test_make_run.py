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
import urllib.parse
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
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "HOST", "PORT", "SECRET_KEY", "DEBUG", "HTTPS", "ALLOWED_HOSTS")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'local.sqlite3'}",
        CLOUD_DATABASE_URL=f"sqlite:///{tmp_path / 'cloud.sqlite3'}",
        WEB_WORKERS="2",
        PYTHONUNBUFFERED="1",
    )
    for args in (["migrate"], ["migrate", "--database", "cloud"], ["createcachetable"]):
        subprocess.run(
            [sys.executable, "manage.py", *args, "--verbosity", "0"], cwd=BASE_DIR, env=env, check=True, timeout=180
        )
    return env


def _serving(env: dict, tmp_path):
    """Start `manage.py serve` on a free port; yields (process, base URL, log path, child pids)."""
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
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


@pytest.fixture
def serve(site_env, tmp_path):
    yield from _serving({**site_env, "DEBUG": "1"}, tmp_path)


@pytest.fixture
def serve_defaults(site_env, tmp_path):
    """What `make run` does with no environment: DEBUG off, collected static files, an admin account."""
    env = {**site_env, "SECRET_KEY_FILE": str(tmp_path / "secret_key"), "ADMIN_USERNAME": "admin",
           "ADMIN_PASSWORD": "Make-run;pass1"}
    for args in (["ensure_admin"], ["collectstatic", "--noinput"]):
        subprocess.run([sys.executable, "manage.py", *args, "--verbosity", "0"], cwd=BASE_DIR, env=env, check=True,
                       timeout=180)
    yield from _serving(env, tmp_path)


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


def test_make_run_defaults_serve_plain_http_without_debug_pages_and_the_admin_login_works(serve_defaults):
    import http.cookiejar

    _process, url, _log, _pids = serve_defaults
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    login_page = opener.open(f"{url}/admin/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page).group(1)
    stylesheet = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login_page)
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "admin", "password": "Make-run;pass1",
                                   "next": "/admin/"}).encode()
    admin_index = opener.open(urllib.request.Request(f"{url}/admin/login/?next=/admin/", data=form)).read().decode()

    assert stylesheet, "static files are not served under their hashed (manifest) names"
    assert _status(url + stylesheet.group(1)) == 200
    assert "Site administration" in admin_index and "Log out" in admin_index
    assert _status(f"{url}/no-such-page/") == 404
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{url}/no-such-page/", timeout=5)
    assert "URLconf" not in missing.value.read().decode()  # not Django's debug 404


def test_serve_refuses_debug_on_an_address_other_machines_reach(site_env):
    env = {**site_env, "DEBUG": "1", "ALLOWED_HOSTS": "campaign.example.com"}

    refused = subprocess.run([sys.executable, "manage.py", "serve", "--host", "0.0.0.0", "--port", str(_free_port())],
                             cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60)

    assert refused.returncode != 0
    assert "DEBUG=1 on 0.0.0.0" in refused.stderr and "ALLOW_DEBUG_ON_PUBLIC_HOST=1" in refused.stderr
