"""Unitary Ingest: one record per SOAP call, 8 concurrent clients on loopback for a fixed
time, against the server exactly as `make run` serves it (`manage.py serve --no-cluster`: gunicorn,
WEB_WORKERS sync workers), beside a trivial Django view served by the same server in the same run.

Clients are Python threads, each with its own `http.client` connection. gunicorn's sync workers
close the connection after every response, so each call opens a new TCP connection on loopback,
as any client of `make run` does. The clients run on the same machine as the server and compete
with it for the CPUs: the trivial view measures that floor (the client, gunicorn, Django's request
cycle), which is why the ratio, not the absolute calls/s, is the result.
"""

import contextlib
import http.client
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
SOAP_PATH = "/nl/jsp/soaprouter.jsp"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Server:
    host: str
    port: int

    def connection(self, timeout: float = 300.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def post(self, path: str, body: bytes, headers: dict, *, timeout: float = 300.0) -> tuple[int, bytes]:
        connection = self.connection(timeout)
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@contextlib.contextmanager
def served(*, env: dict, log_path: Path, ready_path: str, start_timeout: float = 90.0) -> Iterator[Server]:
    """`manage.py serve --no-cluster` on a free loopback port with `env`; stopped (SIGTERM, then
    SIGKILL) on exit. Waits until POST `ready_path` answers 200."""
    port = free_port()
    server = Server("127.0.0.1", port)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--no-cluster", "--host", server.host, "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"manage.py serve exited with {process.returncode}; see {log_path}")
                try:
                    if server.post(ready_path, b"", {}, timeout=5)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not answer within {start_timeout:.0f} s; see {log_path}")
                time.sleep(0.2)
            yield server
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    process.kill()  # its children get SIGTERM from the kernel (serve sets PDEATHSIG)
                    process.wait()


@dataclass(frozen=True)
class Load:
    calls: int
    errors: int
    seconds: float
    latencies: tuple[float, ...]  # seconds, sorted
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        return self.latencies[min(len(self.latencies) - 1, int(len(self.latencies) * p))]


def load(server: Server, path: str, body: bytes, headers: dict, *, clients: int = 8, seconds: float = 20.0,
         ok=lambda status, data: status == 200) -> Load:
    """`clients` threads POSTing `body` to `path` back to back for `seconds`; only answers `ok` count."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    first_error: list[str] = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(slot: int) -> None:
        connection = server.connection(timeout=60)
        mine = latencies[slot]
        start.wait()
        while True:
            began = time.perf_counter()
            if began >= stop_at[0]:
                break
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                good = ok(response.status, data)
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                good, data = False, repr(exc).encode()
            if good:
                mine.append(time.perf_counter() - began)
            else:
                errors[slot] += 1
                if not first_error:
                    first_error.append(data[:300].decode(errors="replace"))
        connection.close()

    threads = [threading.Thread(target=client, args=(slot,), daemon=True) for slot in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    merged = sorted(t for per_client in latencies for t in per_client)
    return Load(calls=len(merged), errors=sum(errors), seconds=elapsed, latencies=tuple(merged),
                first_error=first_error[0] if first_error else "")


def ingest_envelope(session_token: str) -> bytes:
    """One Ingest call of one new record, as Adobe's SDK writes it."""
    return (
        '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="urn:xtk:session"><SOAP-ENV:Body><m:Ingest>'
        f"<m:sessiontoken>{session_token}</m:sessiontoken><m:domDoc>"
        '<sampleTableStg xtkschema="dem:sampleTableStg" testcol1="unitary" testcol2="one record per call"/>'
        "</m:domDoc></m:Ingest></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    ).encode()


def soap_headers(security_token: str) -> dict:
    return {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "xtk:session#Ingest",
            "X-Security-Token": security_token}


def ingest_ok(status: int, data: bytes) -> bool:
    return status == 200 and b"pstrSUuids" in data


def warm_up(server: Server, path: str, body: bytes, headers: dict, *, clients: int = 8) -> None:
    """A second of load so every worker has imported the URLs and opened its database connections."""
    load(server, path, body, headers, clients=clients, seconds=1.0, ok=lambda status, data: True)


def run(server: Server, *, session_token: str, security_token: str, trivial_path: str, clients: int = 8,
        seconds: float = 20.0) -> tuple[Load, Load]:
    """(Ingest load, trivial view load), each for `seconds` with `clients` clients, after a warm-up."""
    body, headers = ingest_envelope(session_token), soap_headers(security_token)
    warm_up(server, trivial_path, body, headers, clients=clients)
    warm_up(server, SOAP_PATH, body, headers, clients=clients)
    trivial = load(server, trivial_path, body, headers, clients=clients, seconds=seconds)
    ingest = load(server, SOAP_PATH, body, headers, clients=clients, seconds=seconds, ok=ingest_ok)
    return ingest, trivial
