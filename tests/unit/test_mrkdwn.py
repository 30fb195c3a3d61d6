"""Outside text made inert for Slack mrkdwn: once escaped it stays the same when escaped again,
and a code span cannot be ended early."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.domain.mrkdwn import code, escape
from handlers.views.message import info_message
from handlers.views.text import mention


def test_the_three_control_characters_become_entities() -> None:
    assert escape("<!channel> & <@U1|x>") == "&lt;!channel&gt; &amp; &lt;@U1|x&gt;"
    assert code("a`b<c>") == "a'b&lt;c&gt;"


@given(st.text())
def test_escaped_text_has_no_markup_and_escaping_again_changes_nothing(text: str) -> None:
    once = escape(text)
    assert "<" not in once and ">" not in once
    assert escape(once) == once
    assert "`" not in code(text)


def test_a_mention_is_made_only_of_an_id() -> None:
    assert mention("U0ALICE") == "<@U0ALICE>"
    assert mention("S0SRE") == "<!subteam^S0SRE>"
    assert mention("U1><!channel") == "`U1&gt;&lt;!channel`"


def test_the_notification_text_keeps_the_bots_mentions_only() -> None:
    message = info_message(f"{mention('U0ALICE')} said {escape('<!channel>')}")
    assert message.text == "<@U0ALICE> said &lt;!channel&gt;"
