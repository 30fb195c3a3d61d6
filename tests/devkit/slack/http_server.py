"""The Web API stand-in's HTTP side: a threaded server on 127.0.0.1 that reads each request's
query and body as Slack does (JSON or form-encoded) and hands it to whoever answers it.

Kept apart from the stand-in's state so the wire format is read in one place.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from tests.devkit.slack.records import Params
from tests.devkit.slack.replies import Reply

# Fields whose value is JSON; in form-encoded bodies they arrive as JSON strings.
JSON_VALUED_FIELDS = ("blocks", "attachments", "metadata")


class AnswersRequests(Protocol):
    def handle_http(self, raw_path: str, headers: dict[str, str], body: bytes) -> Reply: ...


def parse_params(query: str, content_type: str, body: bytes) -> Params:
    """Merge query-string and body params; raises ValueError on a malformed JSON body."""
    params: Params = {
        k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()
    }
    if body and "json" in content_type:
        decoded = json.loads(body)
        params.update(decoded if isinstance(decoded, dict) else {"_body": decoded})
    elif body and "x-www-form-urlencoded" in content_type:
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        params.update({k: v[-1] for k, v in form.items()})
    elif body:
        params["_raw_body"] = body.decode("utf-8", "replace")
    for name in JSON_VALUED_FIELDS:
        value = params.get(name)
        if isinstance(value, str):
            # Undecodable values stay strings, so the check answers invalid_blocks_format.
            with contextlib.suppress(ValueError):
                params[name] = json.loads(value)
    return params


class _RequestHandler(BaseHTTPRequestHandler):
    server: StandinHTTPServer

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.standin.handle_http(self.path, headers, body)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output readable; every call is recorded anyway


class StandinHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung client must not block interpreter exit

    def __init__(self, standin: AnswersRequests) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.standin = standin
