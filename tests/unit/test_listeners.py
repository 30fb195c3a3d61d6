"""The listeners on Bolt's own dispatch, with a Slack stand-in behind the client and a hand-off
that is either recorded or refused: what a user sees when the bot takes no more work, and that
nothing a listener does before the ack waits on the network."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import time
import urllib.parse
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient

from bot.domain.targets import Actor
from bot.services.use_cases import Services
from handlers.app import build_app
from handlers.handoff import Decide, Notify, RunCommand, Work
from handlers.http import MAX_BODY_BYTES, wsgi_app
from handlers.views.cards import APPROVE_ACTION
from handlers.views.progress import ROLLBACK_ACTION
from tests.devkit.slack.signed_requests import block_action_payload, slash_command_payload
from tests.devkit.slack.web_api import SlackStandin

FORM = {"content-type": ["application/x-www-form-urlencoded"]}


@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    with SlackStandin() as standin:
        yield standin


def _app(slack: SlackStandin, dispatch: Any) -> App:
    services = cast(Services, SimpleNamespace(max_replicas=100))
    client = WebClient(token=slack.token, base_url=slack.base_url)
    return build_app(services, client, signing_secret=None, dispatch=dispatch)


def _refuse(work: Work) -> None:
    raise RuntimeError("the bot is stopping and takes no more work")


def _command(app: App, text: str, response_url: str) -> tuple[int, dict[str, Any]]:
    fields = slash_command_payload(text, response_url=response_url)
    response = app.dispatch(BoltRequest(body=urllib.parse.urlencode(fields), headers=FORM))
    return response.status, json.loads(response.body) if response.body else {}


def _click(app: App, action_id: str, value: str, response_url: str) -> int:
    payload = block_action_payload(
        action_id, value, "U0BOB", "C0DEPLOYS", "1700000000.000100", response_url=response_url
    )
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    return app.dispatch(BoltRequest(body=body, headers=FORM)).status


def test_a_command_is_handed_on_before_its_empty_ack(slack: SlackStandin) -> None:
    handed: list[Work] = []
    status, body = _command(
        _app(slack, handed.append), "restart web -n prod", slack.response_url("c1")
    )
    assert status == 200
    assert body == {}
    [work] = handed
    assert isinstance(work, RunCommand)
    assert work.actor.user_id == "U0ALICE"


def test_a_command_that_arrives_while_the_bot_stops_is_refused_in_its_own_ack(
    slack: SlackStandin,
) -> None:
    status, body = _command(_app(slack, _refuse), "restart web -n prod", slack.response_url("c2"))
    assert status == 200  # never a 500 that Slack would show as a failed command
    assert body["text"] == (
        "The bot is restarting and did not run `/rollout restart web -n prod`. Nothing was "
        "changed: try again in a moment."
    )


def test_a_click_that_arrives_while_the_bot_stops_is_acked_and_its_author_told(
    slack: SlackStandin,
) -> None:
    url = slack.response_url("click")
    assert _click(_app(slack, _refuse), APPROVE_ACTION, "a1b2", url) == 200
    told = slack.wait_for("response_url")
    assert told.params["text"] == (
        "The bot is restarting and did not run your approval of request `a1b2`. Nothing was "
        "changed: try again in a moment."
    )


def test_a_forged_button_is_answered_after_the_ack_not_before_it(slack: SlackStandin) -> None:
    handed: list[Work] = []
    url = slack.response_url("forged")
    assert _click(_app(slack, handed.append), ROLLBACK_ACTION, "not a/valid/val/ue", url) == 200
    [work] = handed
    assert isinstance(work, Notify)
    assert "does not name a workload" in work.message.text
    assert slack.calls("response_url") == []  # the listener itself posted nothing


def test_an_approve_click_is_handed_on_with_who_clicked(slack: SlackStandin) -> None:
    handed: list[Work] = []
    assert _click(_app(slack, handed.append), APPROVE_ACTION, "a1b2", "") == 200
    [work] = handed
    assert isinstance(work, Decide)
    assert (work.verb, work.approval_id, work.actor.user_id) == ("approve", "a1b2", "U0BOB")


def test_the_middleware_gives_every_listener_its_actor_and_request_key(
    slack: SlackStandin,
) -> None:
    """One global middleware puts who acts and the request's replay key into Bolt's context:
    a command's actor from its `user_name`, a click's from its `user`, and the key from the
    signature of an HTTP request (none without one)."""
    handed: list[Work] = []
    app = _app(slack, handed.append)
    signature = "v0=" + "ab" * 32
    fields = slash_command_payload("restart web -n prod", response_url=slack.response_url("k"))
    headers = {**FORM, "x-slack-signature": [signature]}
    assert app.dispatch(BoltRequest(body=urllib.parse.urlencode(fields), headers=headers)).status
    assert _click(app, APPROVE_ACTION, "a1b2", "") == 200
    command, click = handed
    assert isinstance(command, RunCommand) and isinstance(click, Decide)
    assert command.actor == Actor("U0ALICE", "alice", "C0DEPLOYS")
    assert command.reply.request_key == "sig" + signature[3:43]
    assert click.actor == Actor("U0BOB", "alice", "C0DEPLOYS")
    assert click.reply.request_key is None


SECRET = "test-signing-secret"


def _wsgi(app: App, body: bytes, *, secret: str = SECRET, **headers: str) -> tuple[str, bytes]:
    """POST /slack/events through handlers.http, signed with `secret` unless headers say else."""
    timestamp = str(int(time.time()))
    base = b"v0:" + timestamp.encode() + b":" + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    environ = {
        "PATH_INFO": "/slack/events",
        "REQUEST_METHOD": "POST",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_X_SLACK_REQUEST_TIMESTAMP": timestamp,
        "HTTP_X_SLACK_SIGNATURE": signature,
        "wsgi.input": io.BytesIO(body),
        **headers,
    }
    started: list[str] = []
    served = wsgi_app(app, lambda environ, start: None, signing_secret=SECRET)
    answer = b"".join(served(environ, lambda status, headers: started.append(status)))
    return started[0], answer


def test_the_signature_is_checked_once_before_bolt_and_refusals_keep_their_codes(
    slack: SlackStandin,
) -> None:
    handed: list[Work] = []
    app = _app(slack, handed.append)
    fields = slash_command_payload("restart web -n prod", response_url=slack.response_url("w"))
    body = urllib.parse.urlencode(fields).encode()
    invalid = b'{"error": "invalid request"}'
    assert _wsgi(app, body, secret="not-the-secret") == ("401 Unauthorized", invalid)
    assert _wsgi(app, body, HTTP_X_SLACK_SIGNATURE="v0=zz") == ("401 Unauthorized", invalid)
    assert _wsgi(app, b"text=\xff\xfe", secret="not-the-secret")[0] == "401 Unauthorized"
    assert _wsgi(app, b"text=\xff\xfe") == ("400 Bad Request", b'{"error": "malformed request"}')
    too_big = str(MAX_BODY_BYTES + 1)
    assert _wsgi(app, body, CONTENT_LENGTH=too_big)[0] == "413 Payload Too Large"
    assert handed == []
    assert _wsgi(app, body) == ("200 OK", b"")
    [work] = handed
    assert isinstance(work, RunCommand) and work.reply.request_key is not None
