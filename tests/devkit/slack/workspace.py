"""The stand-ins' Slack workspace: its tokens, team, app and the bot's own user.

One set, so the Web API stand-in, the Socket Mode stand-in and the signed requests describe
the same workspace (a payload's team is the one auth.test names).
"""

from __future__ import annotations

DEFAULT_TOKEN = "xoxb-test-token"
DEFAULT_APP_TOKEN = "xapp-test"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T0TEAM"
TEAM_NAME = "test"
APP_ID = "A0APP"
