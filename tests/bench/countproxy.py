"""A small counting TLS proxy in front of the test apiserver, run as its own process.

    python -m tests.bench.countproxy --upstream https://127.0.0.1:PORT --certs DIR/certs \
        --log FILE --port-file FILE

Every client connection gets its own upstream connection (kept alive as long as the client
keeps its own), so the proxy adds little per request: it terminates TLS, reads each request's
head (and skips its Content-Length body) to log one line per request, and relays the bytes
both ways untouched — watches stream through as they arrive. Answers are never parsed.

Log lines: `<unix time> <METHOD> <path?query>`. It serves a certificate for IP:127.0.0.1 signed
by the cluster's own CA, so a kubeconfig whose server is swapped for this proxy still verifies.

`CountingProxy` starts and stops the process and reads its log from the parent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]


# -- the proxy process ---------------------------------------------------------------------------


def _serving_cert(workdir: Path, ca_cert: Path, ca_key: Path) -> tuple[Path, Path]:
    """A fresh P-256 key and a 127.0.0.1 serving certificate signed by the cluster CA."""
    ext = workdir / "san.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1\n"
        "authorityKeyIdentifier=keyid\n"
        "subjectKeyIdentifier=hash\n"
    )
    key, csr, crt = workdir / "p.key", workdir / "p.csr", workdir / "p.crt"
    steps = [
        ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)],
        ["req", "-new", "-key", str(key), "-subj", "/CN=bench-count-proxy", "-out", str(csr)],
        [
            *("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key)),
            *("-CAserial", str(workdir / "p.srl"), "-CAcreateserial", "-days", "2"),
            *("-extfile", str(ext), "-out", str(crt)),
        ],
    ]
    for step in steps:
        subprocess.run(["openssl", *step], check=True, capture_output=True)
    return crt, key


class _Relay:
    def __init__(
        self, upstream: tuple[str, int], client_ctx: ssl.SSLContext, log_file: TextIO
    ) -> None:
        self.upstream = upstream
        self.client_ctx = client_ctx
        self.log = log_file

    def record(self, method: bytes, target: bytes) -> None:
        self.log.write(f"{time.time():.6f} {method.decode()} {target.decode()}\n")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.upstream
        try:
            up_reader, up_writer = await asyncio.open_connection(
                host, port, ssl=self.client_ctx, server_hostname=host
            )
        except OSError:
            writer.close()
            return
        down = asyncio.ensure_future(self._requests(reader, up_writer))
        up = asyncio.ensure_future(self._copy(up_reader, writer))
        await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        for task in (down, up):
            task.cancel()
        for stream in (writer, up_writer):
            with contextlib.suppress(Exception):
                stream.close()

    async def _copy(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()

    async def _requests(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Client → apiserver: one log line per request head; bodies are skipped by length."""
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = await src.read(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                parts = lines[0].split(b" ")
                if len(parts) >= 2:
                    self.record(parts[0], parts[1])
                length, chunked = 0, False
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value.strip() or 0)
                    elif name == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                dst.write(head + b"\r\n\r\n")
                if chunked:  # never sent by the Python client; relay the rest untouched
                    dst.write(buffer)
                    await self._copy(src, dst)
                    return
                while len(buffer) < length:
                    data = await src.read(65536)
                    if not data:
                        return
                    buffer += data
                dst.write(buffer[:length])
                buffer = buffer[length:]
                await dst.drain()
        except (OSError, ValueError):
            return


async def _serve(args: argparse.Namespace) -> None:
    parts = urlsplit(args.upstream)
    certs = Path(args.certs)
    workdir = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    crt, key = _serving_cert(workdir, certs / "ca.crt", certs / "ca.key")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(crt), str(key))
    server_ctx.set_alpn_protocols(["http/1.1"])
    client_ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    client_ctx.set_alpn_protocols(["http/1.1"])
    log_file = open(args.log, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    relay = _Relay((parts.hostname or "127.0.0.1", parts.port or 443), client_ctx, log_file)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", 0, ssl=server_ctx, backlog=512)
    port = server.sockets[0].getsockname()[1]
    tmp = Path(args.port_file + ".tmp")
    tmp.write_text(str(port))
    tmp.rename(args.port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()
    log_file.close()
    for path in workdir.iterdir():
        path.unlink()
    workdir.rmdir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="countproxy")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--certs", required=True, help="directory with ca.crt and ca.key")
    parser.add_argument("--log", required=True)
    parser.add_argument("--port-file", required=True)
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


# -- the parent's handle ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxiedRequest:
    time: float
    method: str
    target: str  # path and query

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def is_watch(self) -> bool:
        query = self.target.partition("?")[2]
        return any(p in ("watch=true", "watch=True", "watch=1") for p in query.split("&"))

    def kind(self) -> str:
        """e.g. `GET deployment`, `LIST deployments`, `WATCH deployments`, `PATCH deployment`."""
        segments = [s for s in self.path.split("/") if s]
        skip = 2 if segments[:1] == ["api"] else 3  # /api/v1/... or /apis/GROUP/VERSION/...
        rest = segments[skip:]
        if rest[:1] == ["namespaces"] and len(rest) > 2:
            rest = rest[2:]  # a namespaced resource: drop `namespaces/NAME`
        resource = rest[0] if rest else "?"
        named = len(rest) >= 2
        if len(rest) >= 3:
            resource += "/" + rest[2]  # a subresource, e.g. deployments/NAME/scale
        if self.method == "GET" and self.is_watch:
            return f"WATCH {resource}"
        if self.method == "GET" and not named:
            return f"LIST {resource}"
        head, _, sub = resource.partition("/")
        return f"{self.method} {head.removesuffix('s')}" + (f"/{sub}" if sub else "")


class CountingProxy:
    def __init__(self, upstream: str, certs: Path, workdir: Path, name: str) -> None:
        self.log_path = workdir / f"{name}-requests.log"
        self._port_file = workdir / f"{name}.port"
        self._stderr = workdir / f"{name}.stderr"
        self._argv = [
            sys.executable,
            "-m",
            "tests.bench.countproxy",
            "--upstream",
            upstream,
            "--certs",
            str(certs),
            "--log",
            str(self.log_path),
            "--port-file",
            str(self._port_file),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> CountingProxy:
        self._port_file.unlink(missing_ok=True)
        self.log_path.unlink(missing_ok=True)
        with open(self._stderr, "ab") as err:
            self.proc = subprocess.Popen(
                self._argv,
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while not self._port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"counting proxy did not start: {self._stderr.read_text()}")
            time.sleep(0.05)
        self.port = int(self._port_file.read_text())
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kubeconfig_for(self, original: Path, out: Path) -> Path:
        """A copy of a kubeconfig (the control plane writes JSON) pointing at this proxy."""
        config = json.loads(Path(original).read_text())
        for entry in config.get("clusters") or []:
            entry["cluster"]["server"] = self.url
        out.write_text(json.dumps(config, indent=2))
        return out

    def requests(self, since: float = 0.0, until: float = float("inf")) -> list[ProxiedRequest]:
        found: list[ProxiedRequest] = []
        if not self.log_path.exists():
            return found
        for line in self.log_path.read_text().splitlines():
            stamp, _, rest = line.partition(" ")
            method, _, target = rest.partition(" ")
            with contextlib.suppress(ValueError):
                at = float(stamp)
                if since <= at <= until:
                    found.append(ProxiedRequest(at, method, target))
        return found


if __name__ == "__main__":
    os.environ.pop("PYTHONASYNCIODEBUG", None)
    sys.exit(main())
