"""A TLS-terminating HTTP proxy in front of the test API server that injects faults.

    with ApiFaultProxy.for_cluster(cluster) as proxy:
        proxy.kubeconfig_for(cluster.bot_kubeconfig, tmp_path / "bot.kubeconfig")
        proxy.fail(409, method="PATCH", path=r"/deployments/web$")   # the next PATCH only
        proxy.hang(method="GET", count=None)                          # every GET, until release()

The proxy serves a certificate for IP:127.0.0.1 signed by the cluster's own CA, so a kubeconfig
that only swaps the server URL still verifies. Requests that no rule matches are forwarded to
the real apiserver (verified with the same CA) and the answer is streamed back as it arrives,
so watches keep working. Rules are taken first-added-first; `count=None` matches forever.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = ["ApiFaultProxy", "Fault", "SeenRequest"]

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}
_HOP_BY_HOP |= {"transfer-encoding"}
_REASONS = {
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
# A request the proxy holds "forever" is still released when the proxy stops; this only bounds
# a forgotten hang so a daemon thread cannot outlive a test run by much.
_FOREVER_S = 300.0


@dataclass
class Fault:
    """One injection rule. `kind` is "status", "hang", "drop" or "delay"."""

    kind: str
    method: str | None = None
    path: re.Pattern[str] | None = None
    count: int | None = 1
    status: int = 0
    message: str = ""
    retry_after: int | None = None
    seconds: float | None = None
    hits: int = 0
    released: threading.Event = field(default_factory=threading.Event, repr=False)

    def matches(self, method: str, path: str) -> bool:
        if self.count is not None and self.hits >= self.count:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.path is None or self.path.search(path) is not None


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str  # without the query string
    query: str
    fault: str | None  # the injected fault's kind, None when forwarded untouched


class ApiFaultProxy:
    def __init__(self, upstream: str, ca_cert: Path, ca_key: Path) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 443)
        self._workdir = Path(tempfile.mkdtemp(prefix="api-fault-proxy-"))
        self._server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_ctx.load_cert_chain(*_serving_certificate(self._workdir, ca_cert, ca_key))
        self._client_ctx = ssl.create_default_context(cafile=str(ca_cert))
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._seen: list[SeenRequest] = []
        self._sockets: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server = _Server(self)
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @classmethod
    def for_cluster(cls, cluster: Any) -> ApiFaultProxy:
        """From a tests.devkit.control_plane.ClusterInfo (its server and certs/ca.*)."""
        certs = Path(cluster.directory) / "certs"
        return cls(cluster.server, certs / "ca.crt", certs / "ca.key")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> ApiFaultProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="api-fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection: the API server becomes unreachable."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.release()
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> ApiFaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def kubeconfig_for(self, original: Path, out: Path) -> Path:
        """A copy of `original` (JSON or YAML) whose every cluster's server is this proxy."""
        config = yaml.safe_load(Path(original).read_text())
        for entry in config.get("clusters") or []:
            entry["cluster"]["server"] = self.url
        out.write_text(json.dumps(config, indent=2))
        return out

    # -- rules -----------------------------------------------------------------------------------

    def fail(
        self, status: int, *, message: str = "", retry_after: int | None = None, **match: Any
    ) -> Fault:
        """Answer `status` with a Kubernetes Status body (and Retry-After if given)."""
        text = message or f"injected by the test proxy: {_REASONS.get(status, 'Unknown')}"
        return self._add(
            Fault("status", status=status, message=text, retry_after=retry_after), match
        )

    def hang(self, *, seconds: float | None = None, **match: Any) -> Fault:
        """Hold the request unanswered and unforwarded for `seconds` or until released, then
        close the connection."""
        return self._add(Fault("hang", seconds=seconds), match)

    def drop(self, **match: Any) -> Fault:
        """Close the connection without answering (the request is not forwarded)."""
        return self._add(Fault("drop"), match)

    def delay(self, seconds: float, **match: Any) -> Fault:
        """Forward the request after `seconds`, even if the client has gone away meanwhile."""
        return self._add(Fault("delay", seconds=seconds), match)

    def release(self) -> None:
        """Let every held (hung or delayed) request go on."""
        with self._lock:
            for fault in self._faults:
                fault.released.set()

    def seen(self, method: str | None = None, path: str | None = None) -> list[SeenRequest]:
        """Requests received so far, optionally filtered by method and path regex."""
        pattern = re.compile(path) if path else None
        with self._lock:
            return [
                r
                for r in self._seen
                if (method is None or r.method == method)
                and (pattern is None or pattern.search(r.path))
            ]

    def wait_for(
        self, method: str | None = None, path: str | None = None, timeout: float = 10
    ) -> SeenRequest:
        deadline = time.monotonic() + timeout
        while not (found := self.seen(method, path)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {method or ''} {path or ''} request within {timeout}s")
            time.sleep(0.02)
        return found[-1]

    def _add(self, fault: Fault, match: dict[str, Any]) -> Fault:
        """`match`: method="PATCH", path=<regex searched in the path>, count=1 (None: forever)."""
        unknown = set(match) - {"method", "path", "count"}
        if unknown:
            raise TypeError(f"unknown match keys: {sorted(unknown)}")
        fault.method = match["method"].upper() if match.get("method") else None
        fault.path = re.compile(match["path"]) if match.get("path") else None
        fault.count = match.get("count", 1)
        with self._lock:
            self._faults.append(fault)
        return fault

    def _take(self, method: str, path: str, query: str) -> Fault | None:
        with self._lock:
            fault = next((f for f in self._faults if f.matches(method, path)), None)
            if fault is not None:
                fault.hits += 1
            self._seen.append(SeenRequest(method, path, query, fault.kind if fault else None))
            return fault

    def _track(self, sock: socket.socket, add: bool = True) -> None:
        with self._lock:
            (self._sockets.add if add else self._sockets.discard)(sock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: ApiFaultProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, not in the accept loop.
        request.settimeout(10)
        try:
            tls = self.proxy._server_ctx.wrap_socket(request, server_side=True)
        except OSError:
            return
        tls.settimeout(None)
        self.proxy._track(tls)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except OSError:
            pass
        finally:
            self.proxy._track(tls, add=False)
            with contextlib.suppress(OSError):
                tls.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _handle(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        fault = proxy._take(self.command, path, query)
        if fault is None:
            self._forward(body)
        elif fault.kind == "status":
            self._answer_status(fault)
        elif fault.kind == "delay":
            fault.released.wait(fault.seconds)
            self._forward(body)
        else:  # hang, then drop; or drop at once
            if fault.kind == "hang":
                fault.released.wait(fault.seconds if fault.seconds is not None else _FOREVER_S)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _answer_status(self, fault: Fault) -> None:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": fault.message,
            "reason": _REASONS.get(fault.status, "Unknown"),
            "code": fault.status,
        }
        if fault.retry_after is not None:
            status["details"] = {"retryAfterSeconds": fault.retry_after}
        data = json.dumps(status).encode()
        self.send_response(fault.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if fault.retry_after is not None:
            self.send_header("Retry-After", str(fault.retry_after))
        self.end_headers()
        self.wfile.write(data)

    def _forward(self, body: bytes) -> None:
        proxy = self.server.proxy
        host, port = proxy._upstream
        upstream = http.client.HTTPSConnection(host, port, context=proxy._client_ctx, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            upstream.connect()
            assert upstream.sock is not None
            upstream.sock.settimeout(None)  # a watch may stay quiet for minutes
            proxy._track(upstream.sock)
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
        except (OSError, http.client.HTTPException):
            upstream.close()
            self.send_error(502, "upstream unreachable")
            self.close_connection = True
            return
        try:
            self._relay(response)
        except (OSError, http.client.HTTPException):
            self.close_connection = True  # either side went away mid-answer
        finally:
            if upstream.sock is not None:
                proxy._track(upstream.sock, add=False)
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        no_body = self.command == "HEAD" or response.status in (204, 304)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        chunked = length is None and not no_body
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if no_body:
            return
        while data := response.read1(65536):
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


def _serving_certificate(workdir: Path, ca_cert: Path, ca_key: Path) -> tuple[str, str]:
    """An ECDSA serving certificate for IP:127.0.0.1, signed by the cluster's CA."""

    def openssl(*parts: list[str]) -> None:
        argv = ["openssl", *(arg for part in parts for arg in part)]
        subprocess.run(argv, check=True, capture_output=True, cwd=workdir)

    openssl(
        ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
        ["-keyout", "proxy.key", "-out", "proxy.csr", "-subj", "/CN=api-fault-proxy"],
    )
    (workdir / "proxy.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "authorityKeyIdentifier=keyid\n"
        "subjectKeyIdentifier=hash\n"
    )
    # The serial file lives with the proxy, so the cluster's certs directory stays untouched.
    openssl(
        ["x509", "-req", "-in", "proxy.csr", "-CA", str(ca_cert), "-CAkey", str(ca_key)],
        ["-CAserial", "proxy.srl", "-CAcreateserial", "-out", "proxy.crt", "-days", "2"],
        ["-extfile", "proxy.ext"],
    )
    return str(workdir / "proxy.crt"), str(workdir / "proxy.key")
