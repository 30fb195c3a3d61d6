"""The playground draws Block Kit as Slack does, and never lets a message inject HTML."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bot.domain.approval import ApprovalRequest
from handlers.views.cards import approval_card
from tests.playground import render

USERS = {"U0ALICE": "alice", "U0BOB": "bob"}


def md(text: str, me: str | None = None) -> str:
    return render.mrkdwn(text, USERS, me)


def test_bold_italic_strike_and_code() -> None:
    out = md("*bold* _it_ ~gone~ `x = 1` and snake_case_name stays")
    assert "<b>bold</b>" in out and "<i>it</i>" in out and "<s>gone</s>" in out
    assert "<code>x = 1</code>" in out
    assert "snake_case_name" in out and "<i>case</i>" not in out


def test_code_block_keeps_text_verbatim_and_escaped() -> None:
    out = md("before\n```\n*not bold* <@U0ALICE> &lt;tag&gt;\n```\nafter")
    assert "<pre>*not bold* &lt;@U0ALICE&gt; &lt;tag&gt;</pre>" in out
    assert "before" in out and "after" in out


def test_mentions_render_as_names_and_mark_the_viewer() -> None:
    out = md("<@U0ALICE> asks <@U0BOB> and <!subteam^S0SRE|sre>", me="U0BOB")
    assert '<span class="mention">@alice</span>' in out
    assert '<span class="mention mention-me">@bob</span>' in out
    assert "@sre" in out


def test_bold_around_a_mention() -> None:
    assert "<b>approved by <span" in md("*approved by <@U0BOB>*")


def test_links_only_for_safe_schemes() -> None:
    out = md("<https://example.com/a?b=1&amp;c=2|docs> <javascript:alert(1)|click>")
    assert '<a href="https://example.com/a?b=1&amp;c=2"' in out and ">docs</a>" in out
    assert out.count("<a ") == 1 and 'href="javascript' not in out
    assert "click" in out


def test_user_text_cannot_inject_html() -> None:
    # The bot escapes what users type as Slack requires; the page must not unescape it into tags.
    out = md("Reason: &lt;img src=x onerror=alert(1)&gt; \"quoted\" 'single'")
    assert "<img" not in out
    assert "&lt;img src=x onerror=alert(1)&gt;" in out
    plain = render.text_object({"type": "plain_text", "text": "<script>x</script>"}, USERS)
    assert "<script>" not in plain


def test_dates_become_localizable_times() -> None:
    out = md("expires <!date^1795765571^{date_short_pretty} {time}|2026-11-27T07:46:11>")
    assert 'data-ts="1795765571"' in out and "2026-11-27T07:46:11" in out


def test_emoji_shortcodes() -> None:
    assert "🚀" in md(":rocket: go") and ":not_an_emoji:" in md(":not_an_emoji:")


def test_approval_card_renders_inputs_buttons_and_confirm() -> None:
    now = datetime.now(UTC)
    request = ApprovalRequest(
        requester_id="U0ALICE",
        requester_name="alice",
        channel="C0PROD",
        action="set-image",
        cluster="playground",
        namespace="prod",
        deployment="web",
        parameters={"command": "set image web nginx=nginx:1.19-alpine -n prod", "preview": ""},
        reason="fixes <CVE>",
        required=1,
        approvers=["U0BOB"],
        created_at=now,
        expires_at=now + timedelta(minutes=30),
    )
    card = approval_card(request)
    out = render.message_body(card.text, card.blocks, USERS, "U0BOB")
    assert 'data-action-id="rollout_approve"' in out and "btn-primary" in out
    assert 'data-action-id="rollout_reject"' in out and "btn-danger" in out
    assert 'data-block-id="reject_reason"' in out and 'data-action-id="reject_reason_input"' in out
    assert f'data-block-id="approval:{request.id}"' in out
    confirm = out.split('data-confirm="')[1].split('"')[0]
    dialog = json.loads(confirm.replace("&quot;", '"'))
    assert dialog["title"] == "Approve this change?" and dialog["confirm"] == "Approve"
    assert "fixes &lt;CVE&gt;" in out


def test_unknown_blocks_are_named_not_dropped() -> None:
    out = render.message_body("", [{"type": "video"}, {"type": "divider"}], USERS)
    assert "[video block]" in out and "divider" in out


def test_header_fields_context_and_accessory() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Rollout :rocket:"}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": "*Old*\n`a:1`"}, {"type": "mrkdwn", "text": "b"}],
            "accessory": {
                "type": "button",
                "action_id": "go",
                "text": {"type": "plain_text", "text": "Go"},
            },
            "block_id": "s1",
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "by <@U0BOB>"}]},
    ]
    out = render.message_body("fallback", blocks, USERS)
    assert '<div class="block header">Rollout 🚀</div>' in out
    assert out.count('<div class="field">') == 2 and "<b>Old</b>" in out
    assert 'data-action-id="go"' in out and 'data-block-id="s1"' in out
    assert '<div class="block context">' in out and "@bob" in out
    assert "fallback" not in out  # Slack shows the blocks, not the notification text


def test_text_only_messages_show_their_text() -> None:
    assert "<b>hi</b>" in render.message_body("*hi*", [], USERS)
