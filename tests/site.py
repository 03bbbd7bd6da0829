"""The site served as `make run` serves it, with ONE gunicorn worker, for bad-then-good tests.

Django's live_server answers each request on a fresh thread, so a fault that lingers in one thread's
state (lxml keeps a per-thread error log, for one) never reaches the next request there. Here every
request goes to the same single-threaded worker process, the way a production worker sees them: a
bad request is followed by good ones on that very process, and the test can check that the worker
was never replaced while it ran (`OneWorkerSite.worker_pid()` stays the same).

The server reads the test databases (their URLs are handed to it), so tests must use
`django_db(transaction=True, databases=BOTH_DATABASES)` for what they create to be visible to it.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from campaignsite.db import database_url

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@dataclass
class OneWorkerSite:
    url: str
    process: subprocess.Popen
    log_path: Path

    def worker_pid(self) -> int | None:
        """The pid of gunicorn's one worker (None while it is being replaced)."""
        workers = _children(self.process.pid)
        return workers[0] if len(workers) == 1 else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_one_worker_site(tmp_path: Path, **extra_env: str) -> OneWorkerSite:
    """gunicorn (one sync worker, one thread) on the test databases, answering before this returns."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url("default"),
        "CLOUD_DATABASE_URL": database_url("cloud"),
        # Production-like: no debug pages, no HTTPS redirect on this plain-HTTP socket.
        "DEBUG": "0",
        "SECRET_KEY": "one-worker-test-site-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    env.pop("REDIS_URL", None)
    log_path = tmp_path / f"gunicorn-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "campaignsite.wsgi:application", "--workers", "1", "--threads", "1",
             "--worker-class", "sync", "--bind", f"127.0.0.1:{port}", "--timeout", "120"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    site = OneWorkerSite(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{site.log()}")
        try:
            with urllib.request.urlopen(f"{site.url}/nl/jsp/schemawsdl.jsp?schema=xtk:session", timeout=5):
                return site
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    stop_one_worker_site(site)
    raise RuntimeError(f"gunicorn did not answer within {START_TIMEOUT} s:\n{site.log()}")


def stop_one_worker_site(site: OneWorkerSite) -> None:
    site.process.terminate()
    try:
        site.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(site.process.pid, 9)
        site.process.wait(timeout=10)
