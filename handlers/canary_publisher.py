"""How a canary reads in Slack: its message posted in the change's thread and kept up to date
(the canary monitor's publisher). Updates are paced like progress: one per message per
interval, the latest wins.
"""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.domain.canary import CanaryRecord
from bot.domain.canary_view import CanaryView
from bot.services.progress.coalescer import Coalescer
from handlers.views.canary import canary_message
from handlers.views.message import Message

log = logging.getLogger(__name__)


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
        try:
            response = self._client.chat_postMessage(
                channel=record.channel,
                thread_ts=record.thread_ts or None,
                text=message.text,
                blocks=message.blocks,
            )
        except SlackApiError as exc:
            log.warning("chat.postMessage failed: %s", exc.response.get("error"))
            return None
        except (SlackClientError, OSError) as exc:
            log.warning("chat.postMessage failed: %s", type(exc).__name__)
            return None
        ts = str(response["ts"])
        self.coalescer.note_posted(record.channel, ts, message)
        return ts

    def update(self, record: CanaryRecord, view: CanaryView) -> None:
        self.coalescer.submit(
            record.channel, record.message_ts, canary_message(view), final=view.finished
        )

    def _send_update(self, channel: str, ts: str, message: Message) -> bool:
        try:
            self._client.chat_update(
                channel=channel, ts=ts, text=message.text, blocks=message.blocks
            )
            return True
        except SlackApiError as exc:
            log.warning("chat.update failed: %s", exc.response.get("error"))
        except (SlackClientError, OSError) as exc:
            log.warning("chat.update failed: %s", type(exc).__name__)
        return False
