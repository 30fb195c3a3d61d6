"""How progress reads in Slack: the progress engine's frames rendered and posted, updates paced.

The engine (bot.services.progress) decides what a rollout looks like; this module owns every
Slack call that shows it. chat.update is Tier 3 (about 50 a minute per workspace), so updates
go through a Coalescer: one per message per interval, latest state wins.
"""

from __future__ import annotations

from collections.abc import Callable

from slack_sdk import WebClient

from bot.domain.tracking import TrackedRollout
from bot.services.progress.coalescer import Coalescer
from bot.services.progress.publishing import OutsideChange, ProgressFrame
from handlers.message_calls import post_message, update_message
from handlers.views.message import Message, error_message, info_message
from handlers.views.progress import needs_person_message, outside_change_message, progress_message


class SlackProgressPublisher:
    def __init__(self, client: WebClient, min_interval: float) -> None:
        self._client = client
        self.coalescer: Coalescer[Message] = Coalescer(self._send_update, min_interval)

    def start(self) -> None:
        self.coalescer.start()

    def stop(self) -> None:
        self.coalescer.stop()

    def flush(self, timeout: float) -> bool:
        return self.coalescer.flush(timeout)

    def post(self, frame: ProgressFrame) -> str | None:
        tracked = frame.tracked
        message = render(frame)
        ts = self._post(tracked.channel, message, thread_ts=tracked.thread_ts)
        if ts is not None:
            self.coalescer.note_posted(tracked.channel, ts, message)
        return ts

    def update(
        self, frame: ProgressFrame, *, final: bool, on_delivered: Callable[[], None]
    ) -> None:
        tracked = frame.tracked
        self.coalescer.submit(
            tracked.channel,
            tracked.message_ts,
            render(frame),
            final=final,
            on_delivered=on_delivered,
        )

    def notice(self, channel: str, change: OutsideChange) -> str | None:
        message = outside_change_message(
            change.target,
            change.revision,
            who=change.who,
            changed_at=change.changed_at,
            images_before=change.images_before,
            images_after=change.images_after,
            previous_revision=change.previous_revision,
        )
        return self._post(channel, message)

    def note(self, channel: str, thread_ts: str, text: str, *, error: bool = False) -> None:
        message = error_message(text) if error else info_message(text)
        self._post(channel, message, thread_ts=thread_ts)

    def needs_person(self, tracked: TrackedRollout, revision: int | None = None) -> None:
        message = needs_person_message(tracked, revision)
        self._post(tracked.channel, message, thread_ts=tracked.thread_ts)

    def _post(self, channel: str, message: Message, *, thread_ts: str | None = None) -> str | None:
        return post_message(self._client, channel, message, thread_ts=thread_ts)

    def _send_update(self, channel: str, ts: str, message: Message) -> bool:
        return update_message(self._client, channel, ts, message)


def render(frame: ProgressFrame) -> Message:
    return progress_message(
        frame.tracked,
        frame.status,
        frame.now,
        verdict=frame.verdict,
        reasons=frame.reasons,
        warnings=frame.warnings,
        revision=frame.revision,
    )
