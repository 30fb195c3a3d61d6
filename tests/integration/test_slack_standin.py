"""The Slack stand-ins checked against the real slack_sdk clients and a real Bolt App.

If these pass, a bot test that uses the stand-ins exercises the same wire formats, errors and
limits the bot would meet on Slack.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from slack_bolt import Ack, App, Respond
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from tests.devkit.slack.records import RecordedCall
from tests.devkit.slack.signed_requests import (
    block_action_payload,
    send_block_action,
    send_raw,
    send_slash_command,
    sign,
    signed_headers,
    slash_command_payload,
)
from tests.devkit.slack.socket_mode import SocketModeStandin
from tests.devkit.slack.web_api import SlackStandin

SIGNING_SECRET = "test-secret"
CHANNEL = "C0DEPLOYS"

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    with SlackStandin() as standin:
        yield standin


@pytest.fixture
def client(slack: SlackStandin) -> WebClient:
    return WebClient(base_url=slack.base_url, token=slack.token)


@pytest.fixture
def socket_mode(slack: SlackStandin) -> Iterator[SocketModeStandin]:
    with SocketModeStandin() as standin:
        slack.socket_mode_url = standin.url
        yield standin


def build_bolt_app(slack: SlackStandin) -> App:
    """A minimal rollout-like app: a command that acks and posts, a button that updates."""
    # Default token verification stays on: App() calls auth.test on the stand-in at once.
    app = App(
        client=WebClient(base_url=slack.base_url, token=slack.token),
        signing_secret=SIGNING_SECRET,
    )

    @app.command("/rollout")
    def rollout(ack: Ack, command: dict[str, Any], client: WebClient) -> None:
        ack(f"Rollout queued: {command['text']}")
        client.chat_postMessage(
            channel=command["channel_id"], text=f"Rolling out {command['text']}"
        )

    @app.action("approve")
    def approve(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        client.chat_update(
            channel=body["channel"]["id"],
            ts=body["container"]["message_ts"],
            text=f"Approved by <@{body['user']['id']}> ({body['actions'][0]['value']})",
        )
        respond(text="Thanks", replace_original=False)

    return app


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def bolt_http_url(slack: SlackStandin) -> Iterator[str]:
    """The Bolt app served over real HTTP (threaded, like the bot's waitress deployment)."""
    server = make_server(
        "127.0.0.1",
        0,
        SlackRequestHandler(build_bolt_app(slack)),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/slack/events"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def socket_mode_handler(
    slack: SlackStandin, socket_mode: SocketModeStandin
) -> Iterator[SocketModeHandler]:
    # A short ping interval exercises ping/pong, and bounds how long the SDK takes to notice a
    # dropped connection: it reconnects from its monitor thread, which runs every ping_interval.
    handler = SocketModeHandler(build_bolt_app(slack), app_token=slack.app_token, ping_interval=1)
    handler.connect()
    socket_mode.wait_for_connections(1)
    yield handler
    handler.close()  # before the stand-ins stop, so the client doesn't try to reconnect


# ---------------------------------------------------------------------------------------------
# messages
# ---------------------------------------------------------------------------------------------


def test_post_message_then_update_keeps_one_message(slack: SlackStandin, client: WebClient) -> None:
    posted = client.chat_postMessage(channel=CHANNEL, text="Rolling out web 1.2.3")
    assert re.fullmatch(r"\d{10}\.\d{6}", posted["ts"])
    assert posted["message"]["text"] == "Rolling out web 1.2.3"

    updated = client.chat_update(channel=CHANNEL, ts=posted["ts"], text="web 1.2.3: 3/3 ready")
    assert updated["ts"] == posted["ts"]

    reply = client.chat_postMessage(channel=CHANNEL, text="details", thread_ts=posted["ts"])
    assert float(reply["ts"]) > float(posted["ts"])  # ts grow monotonically

    root, threaded = slack.messages(CHANNEL)
    assert (root.text, root.update_count, root.thread_ts) == ("web 1.2.3: 3/3 ready", 1, None)
    assert [v["text"] for v in root.versions] == ["Rolling out web 1.2.3", "web 1.2.3: 3/3 ready"]
    assert threaded.thread_ts == posted["ts"]
    # slack_sdk sends chat.* as JSON; the recorded params are the decoded body.
    call = slack.wait_for("chat.update")
    assert call.params["ts"] == posted["ts"]
    assert call.headers["content-type"].startswith("application/json")


def test_update_of_unknown_ts_fails(slack: SlackStandin, client: WebClient) -> None:
    posted = client.chat_postMessage(channel=CHANNEL, text="hello")
    for channel, ts in [(CHANNEL, "1600000000.000001"), ("C0OTHER", posted["ts"])]:
        with pytest.raises(SlackApiError) as raised:
            client.chat_update(channel=channel, ts=ts, text="nope")
        assert raised.value.response["error"] == "message_not_found"
    assert slack.messages(CHANNEL)[0].text == "hello"


def test_ratelimited_is_raised_without_a_retry_handler(
    slack: SlackStandin, client: WebClient
) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="hi")
    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "1"
    assert raised.value.response["error"] == "ratelimited"
    (call,) = slack.calls("chat.postMessage")
    assert call.injected and call.status == 429
    assert slack.messages(CHANNEL) == []


def test_ratelimited_succeeds_with_rate_limit_retry_handler(
    slack: SlackStandin, client: WebClient
) -> None:
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()
    response = client.chat_postMessage(channel=CHANNEL, text="hi")
    assert response["ok"]
    assert time.monotonic() - started >= 1.0  # the handler honoured Retry-After
    assert [c.injected for c in slack.calls("chat.postMessage")] == [True, False]
    assert slack.wait_for("chat.postMessage").ok


def test_server_errors(slack: SlackStandin, client: WebClient) -> None:
    slack.fail_next("chat.update", status=503, count=2)
    posted = client.chat_postMessage(channel=CHANNEL, text="a")
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel=CHANNEL, ts=posted["ts"], text="b")
    assert raised.value.response.status_code == 503

    client.retry_handlers.append(ServerErrorRetryHandler(max_retry_count=1))
    assert client.chat_update(channel=CHANNEL, ts=posted["ts"], text="b")["ok"]
    assert [c.status for c in slack.calls("chat.update")] == [503, 503, 200]


def test_rate_limiter_and_delay(slack: SlackStandin, client: WebClient) -> None:
    slack.rate_limit("chat.postEphemeral", per_second=2)
    statuses = []
    for _ in range(3):
        try:
            client.chat_postEphemeral(channel=CHANNEL, user="U0ALICE", text="hi")
            statuses.append(200)
        except SlackApiError as error:
            statuses.append(error.response.status_code)
    assert statuses == [200, 200, 429]

    slack.set_delay("auth.test", 0.5)
    started = time.monotonic()
    client.auth_test()
    assert time.monotonic() - started >= 0.5


def _button(text: str = "Approve", action_id: str = "approve") -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "value": "r-1",
    }


def _section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id:
        block["block_id"] = block_id
    return block


@pytest.mark.parametrize(
    ("blocks", "pointer"),
    [
        ([{"type": "divider"}] * 51, "/blocks"),
        ([_section("x" * 3001)], "/blocks/0/text/text"),
        ([{"type": "actions", "elements": [_button("x" * 76)]}], "/blocks/0/elements/0/text/text"),
        ([_section("a", "dup"), _section("b", "dup")], "/blocks/1/block_id"),
        (
            [{"type": "actions", "elements": [_button(), _button()]}],
            "/blocks/0/elements/1/action_id",
        ),
        ([{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}], "/blocks/0/text"),
        ([{"type": "table"}], "/blocks/0/type"),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
            "/blocks/0/fields",
        ),
    ],
    ids=["51-blocks", "section-3001", "button-76", "dup-block-id", "dup-action-id", "header-mrkdwn",
         "unknown-type", "11-fields"],
)  # fmt: skip
def test_block_kit_limits_are_enforced(
    slack: SlackStandin, client: WebClient, blocks: list[dict[str, Any]], pointer: str
) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="fallback", blocks=blocks)
    response = raised.value.response
    assert response.status_code == 200  # Slack reports Block Kit errors with HTTP 200
    assert response["error"] == "invalid_blocks"
    assert any(e.endswith(f"[json-pointer:{pointer}]") for e in response["errors"]), response.data
    assert slack.messages(CHANNEL) == []


def test_form_encoded_blocks_and_message_errors(slack: SlackStandin, client: WebClient) -> None:
    # Form bodies carry blocks as a JSON string; a bad string is invalid_blocks_format.
    good = client.api_call(
        "chat.postMessage",
        params={"channel": CHANNEL, "text": "t", "blocks": json.dumps([_section("hi")])},
    )
    assert slack.messages(CHANNEL)[0].blocks == [_section("hi")]
    assert slack.wait_for("chat.postMessage").params["blocks"] == [_section("hi")]
    assert good["ok"]

    cases = [
        ({"blocks": "[not json", "text": "t"}, "invalid_blocks_format"),
        ({"text": ""}, "no_text"),
        ({"text": "x" * 40_001}, "msg_too_long"),
    ]
    for extra, error in cases:
        with pytest.raises(SlackApiError) as raised:
            client.api_call("chat.postMessage", params={"channel": CHANNEL, **extra})
        assert raised.value.response["error"] == error


def test_good_message_from_sdk_models_is_accepted(slack: SlackStandin, client: WebClient) -> None:
    confirm = ConfirmObject(title="Approve?", text="Roll out web 1.2.3?", confirm="Yes", deny="No")
    blocks = [
        HeaderBlock(text="Rollout web 1.2.3"),
        SectionBlock(
            block_id="status",
            text=MarkdownTextObject(text="*web* 1.2.3 → prod"),
            fields=[MarkdownTextObject(text=f"*pods*\n{i}/3") for i in range(10)],
        ),
        DividerBlock(),
        ContextBlock(elements=[MarkdownTextObject(text="requested by <@U0ALICE>")]),
        ActionsBlock(
            block_id="decision",
            elements=[
                ButtonElement(
                    text="Approve",
                    action_id="approve",
                    value="r-1",
                    style="primary",
                    confirm=confirm,
                ),
                ButtonElement(text="Reject", action_id="reject", value="r-1", style="danger"),
            ],
        ),
    ]
    response = client.chat_postMessage(channel=CHANNEL, text="Rollout web 1.2.3", blocks=blocks)
    assert response["ok"]
    (message,) = slack.messages(CHANNEL)
    assert message.blocks == [block.to_dict() for block in blocks]


def test_auth_errors_and_unknown_method(slack: SlackStandin) -> None:
    with pytest.raises(SlackApiError) as raised:
        WebClient(base_url=slack.base_url, token="xoxb-wrong").auth_test()
    assert raised.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as raised:
        WebClient(base_url=slack.base_url).auth_test()
    assert raised.value.response["error"] == "not_authed"
    with pytest.raises(SlackApiError) as raised:
        WebClient(base_url=slack.base_url, token=slack.token).api_call("chat.meMessage")
    assert raised.value.response["error"] == "unknown_method"
    assert all("token" not in call.params for call in slack.calls())  # secrets not recorded


def test_directory_methods(slack: SlackStandin, client: WebClient) -> None:
    slack.add_user("U0ALICE", "alice", real_name="Alice A", tz="America/New_York")
    slack.set_usergroup("S0APPROVERS", ["U0ALICE", "U0BOB"])
    slack.add_channel(CHANNEL, "deploys")
    slack.mark_channel_missing("C0PRIVATE")

    user = client.users_info(user="U0ALICE")["user"]
    assert (user["name"], user["real_name"], user["tz"]) == ("alice", "Alice A", "America/New_York")
    assert client.usergroups_users_list(usergroup="S0APPROVERS")["users"] == ["U0ALICE", "U0BOB"]
    assert client.conversations_info(channel=CHANNEL)["channel"]["name"] == "deploys"
    assert client.auth_test()["user_id"] == "UBOT"

    failing_calls: list[tuple[Callable[[], object], str]] = [
        (lambda: client.users_info(user="U0NOBODY"), "user_not_found"),
        (lambda: client.usergroups_users_list(usergroup="S0NONE"), "no_such_subteam"),
        (lambda: client.conversations_info(channel="C0PRIVATE"), "channel_not_found"),
        (lambda: client.chat_postMessage(channel="C0PRIVATE", text="x"), "channel_not_found"),
    ]
    for call, error in failing_calls:
        with pytest.raises(SlackApiError) as raised:
            call()
        assert raised.value.response["error"] == error


def test_response_url_allows_five_uses(slack: SlackStandin) -> None:
    webhook = WebhookClient(slack.response_url("cmd-1"))
    statuses = [webhook.send(text=f"reply {i}").status_code for i in range(6)]
    assert statuses == [200] * 5 + [404]
    last = webhook.send(text="again")
    assert (last.status_code, last.body) == (404, "used_url")

    calls = slack.calls("response_url")
    assert [c.params["_tag"] for c in calls] == ["cmd-1"] * 7
    assert calls[0].params["text"] == "reply 0"


def test_response_url_checks_blocks_and_replaces_bound_message(
    slack: SlackStandin, client: WebClient
) -> None:
    posted = client.chat_postMessage(channel=CHANNEL, text="Approve?")
    webhook = WebhookClient(slack.response_url("act-1", channel=CHANNEL, message_ts=posted["ts"]))

    bad = webhook.send(text="t", blocks=[{"type": "divider"}] * 51)
    assert bad.status_code == 400
    assert json.loads(bad.body)["error"] == "invalid_blocks"

    assert webhook.send(text="Approved", replace_original=True).status_code == 200
    assert slack.messages(CHANNEL)[0].text == "Approved"
    assert webhook.send(delete_original=True).status_code == 200
    assert slack.messages(CHANNEL) == []


def test_wait_for_times_out_with_a_summary(slack: SlackStandin, client: WebClient) -> None:
    client.chat_postMessage(channel=CHANNEL, text="only this")
    with pytest.raises(AssertionError, match=r"chat\.update(.|\n)*only this"):
        slack.wait_for("chat.update", timeout=0.2)

    # A call arriving later (from another thread) wakes the waiter.
    def update_soon() -> None:
        time.sleep(0.2)
        ts = slack.messages(CHANNEL)[0].ts
        client.chat_update(channel=CHANNEL, ts=ts, text="done")

    threading.Thread(target=update_soon).start()
    call: RecordedCall = slack.wait_for("chat.update", lambda c: c.params["text"] == "done")
    assert call.ok


# ---------------------------------------------------------------------------------------------
# signed requests against a real Bolt App over HTTP
# ---------------------------------------------------------------------------------------------


def test_sign_matches_slack_worked_example() -> None:
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
        b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook"
        b"-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F3977"
        b"00885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10"
        b"d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert sign("8f742231b10e8888abcd99yyyzzz85a5", 1531420618, body) == expected
    headers = signed_headers(SIGNING_SECRET, b"a=b")
    assert SignatureVerifier(SIGNING_SECRET).is_valid_request(b"a=b", headers)


def test_bolt_http_slash_command_is_acked_and_posts(
    slack: SlackStandin, bolt_http_url: str
) -> None:
    response = send_slash_command(bolt_http_url, SIGNING_SECRET, "start web 1.2.3")
    assert response.status == 200
    assert response.body == "Rollout queued: start web 1.2.3"

    call = slack.wait_for("chat.postMessage")
    assert call.params["channel"] == CHANNEL
    assert call.params["text"] == "Rolling out start web 1.2.3"
    assert call.params["team_id"] == "T0TEAM"  # Bolt's per-request client adds it


def test_bolt_http_rejects_bad_and_stale_signatures(bolt_http_url: str) -> None:
    fields = slash_command_payload("status")
    body = urllib.parse.urlencode(fields).encode()
    bad = {**signed_headers(SIGNING_SECRET, body), "X-Slack-Signature": "v0=" + "0" * 64}
    assert send_raw(bolt_http_url, body, bad).status == 401
    assert send_raw(bolt_http_url, body, {"Content-Type": "text/plain"}).status == 401
    stale = send_slash_command(
        bolt_http_url, SIGNING_SECRET, "status", timestamp=int(time.time()) - 301
    )
    assert (stale.status, stale.json()) == (401, {"error": "invalid request"})
    assert send_slash_command(bolt_http_url, "wrong-secret", "status").status == 401


def test_bolt_http_block_action_updates_message(
    slack: SlackStandin, client: WebClient, bolt_http_url: str
) -> None:
    posted = client.chat_postMessage(channel=CHANNEL, text="Approve web 1.2.3?")
    response = send_block_action(
        bolt_http_url,
        SIGNING_SECRET,
        action_id="approve",
        value="r-1",
        user_id="U0BOB",
        channel_id=CHANNEL,
        message_ts=posted["ts"],
        response_url=slack.response_url("click-1"),
    )
    assert response.status == 200

    slack.wait_for("response_url", lambda c: c.params["_tag"] == "click-1")
    slack.wait_for("chat.update")
    (message,) = slack.messages(CHANNEL)
    assert message.text == "Approved by <@U0BOB> (r-1)"


# ---------------------------------------------------------------------------------------------
# Socket Mode with the real slack_sdk client under Bolt's SocketModeHandler
# ---------------------------------------------------------------------------------------------


def test_socket_mode_slash_command_round_trip(
    slack: SlackStandin, socket_mode: SocketModeStandin, socket_mode_handler: SocketModeHandler
) -> None:
    # The SDK fetched the WebSocket URL with the app-level token, not the bot token.
    opened = slack.wait_for("apps.connections.open")
    assert opened.ok and opened.headers["authorization"] == f"Bearer {slack.app_token}"

    envelope_id = socket_mode.send_slash_command(slash_command_payload("start web 2.0"))
    ack = socket_mode.wait_for_ack(envelope_id)
    assert ack == {"envelope_id": envelope_id, "payload": {"text": "Rollout queued: start web 2.0"}}
    assert slack.wait_for("chat.postMessage").params["text"] == "Rolling out start web 2.0"


def test_socket_mode_block_action_and_reconnect(
    slack: SlackStandin,
    client: WebClient,
    socket_mode: SocketModeStandin,
    socket_mode_handler: SocketModeHandler,
) -> None:
    posted = client.chat_postMessage(channel=CHANNEL, text="Approve?")
    payload = block_action_payload(
        "approve", "r-7", "U0CAROL", CHANNEL, posted["ts"], slack.response_url("sm-click")
    )
    envelope_id = socket_mode.send_block_action(payload)
    assert "payload" not in socket_mode.wait_for_ack(envelope_id)  # plain ack
    slack.wait_for("chat.update")
    assert slack.messages(CHANNEL)[0].text == "Approved by <@U0CAROL> (r-7)"

    # `disconnect` makes the client fetch a fresh URL and reconnect.
    socket_mode.disconnect_all()
    socket_mode.wait_for_connects_total(2)
    assert len(slack.calls("apps.connections.open")) == 2
    second = socket_mode.send_slash_command(slash_command_payload("status"))
    assert socket_mode.wait_for_ack(second)["payload"] == {"text": "Rollout queued: status"}

    # A dropped connection (no `disconnect` first) is re-established by the client too.
    socket_mode.drop_all()
    socket_mode.wait_for_connects_total(3)
    third = socket_mode.send_slash_command(slash_command_payload("status"))
    assert socket_mode.wait_for_ack(third)["payload"] == {"text": "Rollout queued: status"}
