"""What each playground user sees, from what the Slack stand-in recorded (no cluster needed)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from tests.devkit.slack.web_api import SlackStandin
from tests.playground import demo
from tests.playground.timeline import Timeline


@pytest.fixture
def standin() -> Iterator[SlackStandin]:
    with SlackStandin() as slack:
        for user in demo.USERS:
            slack.add_user(user.id, user.name)
        yield slack


def post_json(url: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=5) as reply:
        assert reply.status == 200


def test_channel_threads_ephemerals_and_updates(standin: SlackStandin) -> None:
    timeline = Timeline(standin, demo.user_names())
    client = WebClient(base_url=standin.base_url, token=standin.token)
    card = client.chat_postMessage(channel="C0PROD", text="card", blocks=[])
    reply = client.chat_postMessage(channel="C0PROD", text="progress 1/3", thread_ts=card["ts"])
    client.chat_postMessage(channel="C0STAGING", text="elsewhere")
    client.chat_postEphemeral(channel="C0PROD", user="U0BOB", text="only bob")
    tag = timeline.new_tag("cmd", "U0ALICE", "C0PROD")
    post_json(standin.response_url(tag), {"text": "only alice", "response_type": "ephemeral"})
    loud = timeline.new_tag("cmd", "U0CAROL", "C0PROD")
    post_json(standin.response_url(loud), {"text": "everyone", "response_type": "in_channel"})
    timeline.note("C0PROD", "U0ALICE", "/rollout help", visible_to="U0ALICE", kind="command")

    before = timeline.version()
    client.chat_update(channel="C0PROD", ts=reply["ts"], text="progress 3/3")
    assert timeline.version() > before

    def texts(viewer: str) -> list[str]:
        return [e.text for e in timeline.entries("C0PROD", viewer)]

    assert texts("U0ALICE") == ["card", "progress 3/3", "only alice", "everyone", "/rollout help"]
    assert texts("U0BOB") == ["card", "progress 3/3", "only bob", "everyone"]
    assert texts("U0CAROL") == ["card", "progress 3/3", "everyone"]

    items = {i["id"]: i for i in timeline.view("C0PROD", "U0ALICE")}
    parent, child = items[f"msg-{card['ts']}"], items[f"msg-{reply['ts']}"]
    assert parent["replies"] == 1 and child["parent"] == parent["id"] and child["edited"]
    assert [i["ephemeral"] for i in items.values()] == [False, False, True, False, True]
    assert timeline.counts(["C0PROD", "C0STAGING"], "U0CAROL") == {"C0PROD": 2, "C0STAGING": 1}


def test_replace_original_changes_the_card_instead_of_adding_a_message(
    standin: SlackStandin,
) -> None:
    timeline = Timeline(standin, demo.user_names())
    client = WebClient(base_url=standin.base_url, token=standin.token)
    card = client.chat_postMessage(channel="C0PROD", text="pending")
    tag = timeline.new_tag("act", "U0BOB", "C0PROD")
    url = standin.response_url(tag, "C0PROD", card["ts"])
    post_json(url, {"text": "approved", "replace_original": True})
    assert [e.text for e in timeline.entries("C0PROD", "U0BOB")] == ["approved"]
