"""Serve the site with gunicorn and run django-q2's cluster beside it, in one foreground command.

`make run` ends with this command. Both servers run as child processes, each in its own process
group: a Ctrl-C in the terminal reaches only this supervisor, which then stops the children in
order (a graceful signal, a bounded wait, then SIGKILL to the whole group so no worker is left).
If either child dies on its own, the other is stopped too and the command fails, so a process
manager (systemd, a container runtime) sees the failure and can restart the pair.
"""

import ctypes
import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

STOP_TIMEOUT_SECONDS = 20
_POLL_SECONDS = 0.2


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if this supervisor is killed outright (SIGKILL),
    # Linux sends the child SIGTERM instead of leaving an orphaned server holding the port.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return  # not Linux/glibc: the normal stop path still applies
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _bracketed(host: str) -> str:
    """An IPv6 address in brackets, as URLs and gunicorn's --bind want it."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to an address others reach


def debug_exposure_refuse(host: str) -> None:
    """CommandError when DEBUG is on and `host` is reachable by other machines (debug pages show
    tracebacks, settings and SQL to whoever asks), unless ALLOW_DEBUG_ON_PUBLIC_HOST=1."""
    if settings.DEBUG and not _is_loopback(host) and not settings.ALLOW_DEBUG_ON_PUBLIC_HOST:
        raise CommandError(
            f"Refusing to serve with DEBUG=1 on {host}: other machines could read Django's debug pages "
            "(tracebacks, settings, SQL). Unset DEBUG, serve on 127.0.0.1, or set ALLOW_DEBUG_ON_PUBLIC_HOST=1 "
            "if this network is yours alone."
        )


class Command(BaseCommand):
    help = (
        "Serve the admin, SOAP and REST with gunicorn (HOST, PORT, WEB_WORKERS, WEB_TIMEOUT) and run the "
        "django-q2 cluster beside it. Ctrl-C or SIGTERM stops both; if one dies the other is stopped and "
        "the command exits non-zero."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.HOST, help="address to bind (default: HOST, %(default)s)")
        parser.add_argument("--port", type=int, default=settings.PORT, help="port (default: PORT, %(default)s)")
        parser.add_argument(
            "--workers", type=int, default=settings.WEB_WORKERS, help="gunicorn workers (default: WEB_WORKERS)"
        )
        parser.add_argument("--no-cluster", action="store_true", help="serve only; run `manage.py qcluster` elsewhere")

    def handle(self, *args, host: str, port: int, workers: int, no_cluster: bool, **options):
        debug_exposure_refuse(host)
        base_dir = Path(settings.BASE_DIR)
        commands = {
            "gunicorn": [
                sys.executable, "-m", "gunicorn", "campaignsite.wsgi:application",
                "--chdir", str(base_dir),
                "--bind", f"{_bracketed(host)}:{port}",
                "--workers", str(workers),
                "--timeout", str(settings.WEB_TIMEOUT),
                "--graceful-timeout", str(STOP_TIMEOUT_SECONDS - 5),
                "--access-logfile", "-",
                "--error-logfile", "-",
                # gunicorn's control socket has one fixed path per user; several instances on
                # one machine (scale-out, tests) would take it from each other.
                "--no-control-socket",
            ],
        }
        if not no_cluster:
            commands["qcluster"] = [sys.executable, str(base_dir / "manage.py"), "qcluster"]

        stop_signal: list[int] = []

        def request_stop(signum, frame):
            stop_signal.append(signum)

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        children: dict[str, subprocess.Popen] = {}
        try:
            for name, argv in commands.items():
                children[name] = subprocess.Popen(
                    argv, cwd=base_dir, process_group=0, preexec_fn=_die_with_parent
                )
            self._announce(host, port, children)
            failed = self._wait_for_stop_or_death(children, stop_signal)
        finally:
            self._stop_all(children)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        if failed:
            name, code = failed
            raise CommandError(f"{name} exited with status {code}; stopped the rest. See its output above.")
        self.stdout.write("Stopped.")

    def _announce(self, host: str, port: int, children: dict[str, subprocess.Popen]) -> None:
        url = f"http://{_bracketed(host)}:{port}"
        pids = ", ".join(f"{name} pid {child.pid}" for name, child in children.items())
        self.stdout.write(
            f"\nCampaign staging is serving on {url}/  ({pids})\n"
            f"  admin        {url}/admin/\n"
            f"  SOAP router  {url}/nl/jsp/soaprouter.jsp\n"
            f"  REST API     {url}/api/v1/   (docs {url}/api/docs/)\n"
            "Press Ctrl-C to stop.\n"
        )
        self.stdout.flush()

    def _wait_for_stop_or_death(self, children, stop_signal) -> tuple[str, int] | None:
        while not stop_signal:
            for name, child in children.items():
                code = child.poll()
                if code is not None:
                    self.stderr.write(f"{name} (pid {child.pid}) exited with status {code}; stopping the others.")
                    return name, code
            time.sleep(_POLL_SECONDS)
        self.stdout.write(f"\nReceived {signal.Signals(stop_signal[0]).name}; stopping {', '.join(children)}...")
        return None

    def _stop_all(self, children: dict[str, subprocess.Popen]) -> None:
        # Graceful first: gunicorn finishes in-flight requests, qcluster lets workers finish their
        # task (tasks are idempotent, so one cut short by the SIGKILL below is redone later).
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for name, child in children.items():
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop within {STOP_TIMEOUT_SECONDS} s; killing it.")
        for child in children.values():
            # The child led its own process group; this also reaches workers it left behind.
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            child.wait()
