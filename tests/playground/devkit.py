"""The one place the playground imports the development kit from.

The Slack stand-in, the signed-request builders, the local control plane and the private
redis-server are shared with the test suite (never copied), so the playground talks to exactly
the stand-in the tests trust. Switching where they live is an edit of this file only.
"""

from __future__ import annotations

from tests.devkit.control_plane import ClusterInfo, ControlPlane
from tests.devkit.lifetime import ending_with_this_process
from tests.devkit.redis_server import RedisServer, RedisServerNotInstalled
from tests.devkit.slack_api import PostedMessage, RecordedCall, SlackStandin
from tests.devkit.slack_requests import Response, send_block_action, send_slash_command

__all__ = [
    "ClusterInfo",
    "ControlPlane",
    "PostedMessage",
    "RecordedCall",
    "RedisServer",
    "RedisServerNotInstalled",
    "Response",
    "SlackStandin",
    "ending_with_this_process",
    "send_block_action",
    "send_slash_command",
]
