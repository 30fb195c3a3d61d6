"""The one place the playground imports the development kit from.

The Slack stand-in, the signed-request builders, the local control plane and the private
redis-server are shared with the test suite (never copied), so the playground talks to exactly
the stand-in the tests trust. Switching where they live is an edit of this file only.
"""

from __future__ import annotations

from tests.support.control_plane import ClusterInfo, ControlPlane
from tests.support.redis_server import RedisServer, RedisServerNotInstalled
from tests.support.slack_requests import Response, send_block_action, send_slash_command
from tests.support.slack_standin import PostedMessage, RecordedCall, SlackStandin

__all__ = [
    "ClusterInfo",
    "ControlPlane",
    "PostedMessage",
    "RecordedCall",
    "RedisServer",
    "RedisServerNotInstalled",
    "Response",
    "SlackStandin",
    "send_block_action",
    "send_slash_command",
]
