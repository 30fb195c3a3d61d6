"""How a canary reads in Slack: its message posted in the change's thread and kept up to date
(the canary monitor's publisher). Updates are paced like progress: one per message per
interval, the latest wins.
"""

from __future__ import annotations

from slack_sdk import WebClient

from bot.domain.canary import CanaryRecord
from bot.domain.canary_view import CanaryView
from bot.services.progress.coalescer import Coalescer
from handlers.message_calls import post_message, update_message
from handlers.views.canary import canary_message
from handlers.views.message import Message


class SlackCanaryPublisher:
    """The canary message's Slack calls; updates are paced like progress (one per message per
    interval, the latest wins)."""

    def __init__(self, client: WebClient, min_interval: float) -> None:
        self._client = client
        self.coalescer: Coalescer[Message] = Coalescer(self._send_update, min_interval)

    def start(self) -> None:
        self.coalescer.start()

    def stop(self, timeout: float = 2.0) -> None:
        self.coalescer.flush(timeout)
        self.coalescer.stop()

    def post(self, record: CanaryRecord, view: CanaryView) -> str | None:
        message = canary_message(view)
        ts = post_message(self._client, record.channel, message, thread_ts=record.thread_ts or None)
        if ts is None:
            return None
        self.coalescer.note_posted(record.channel, ts, message)
        return ts

    def update(self, record: CanaryRecord, view: CanaryView) -> None:
        self.coalescer.submit(
            record.channel, record.message_ts, canary_message(view), final=view.finished
        )

    def _send_update(self, channel: str, ts: str, message: Message) -> bool:
        return update_message(self._client, channel, ts, message)
