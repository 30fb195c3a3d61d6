"""What a listener hands on after the ack: plain, picklable descriptions of the work, and the
one function that performs them, wherever that runs (a thread here, or a worker process).

    RunCommand   a typed /rollout command, or a Roll back / Pause click
    Decide       an Approve / Reject / Cancel click
    Notify       a message for the user who clicked, and nothing else to do

A reply goes back through the interaction's response_url and the Web API, which any process
can use: nothing here holds a socket or a thread of the process that acknowledged it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

from slack_bolt import BoltRequest, Respond
from slack_sdk import WebClient

from bot.domain import verbs as cmd
from bot.domain.errors import StoreUnavailable
from bot.domain.targets import Actor
from bot.services.container import Services
from handlers.replies import Replier
from handlers.views import blocks
from handlers.views.blocks import Message

log = logging.getLogger(__name__)

SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
# A signature verifies while its timestamp is within 5 minutes of now, in either direction, so
# one request stays valid for up to 10 minutes (a timestamp 5 minutes ahead, replayed until
# 5 minutes past it). Remembering it a little longer covers that whole window.
REPLAY_WINDOW_SECONDS = 660


def request_key(request: BoltRequest) -> str | None:
    """What tells a signed HTTP request apart: its signature. An exact replay inside Slack's
    signing window has the same one, and `perform` runs it only once. Whether the key was
    seen before is asked of Redis after the ack, so a slow Redis never delays one. Socket
    Mode has no signatures (its WebSocket is authenticated by the app-level token)."""
    if request.mode != "http":
        return None
    signature = (request.headers.get("x-slack-signature") or [""])[0]
    return "sig" + signature[3:43] if SIGNATURE.fullmatch(signature) else None


@dataclass(frozen=True)
class Reply:
    """Where the answers to one interaction go, and the key that tells a replay of it apart
    (None when there is nothing to guard: Socket Mode has no signed requests)."""

    response_url: str | None
    channel: str
    request_key: str | None = None

    @classmethod
    def to(cls, respond: Respond, channel: str, request: BoltRequest) -> Reply:
        return cls(respond.response_url, channel, request_key(request))

    def replier(self, client: WebClient) -> Replier:
        respond = Respond(response_url=self.response_url) if self.response_url else None
        return Replier(respond, client, self.channel)


@dataclass(frozen=True)
class Clicked:
    """The message whose button was clicked, so its used buttons can give way to what
    happened: its channel, ts and blocks as Slack delivered them with the click."""

    channel: str
    ts: str
    blocks: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class RunCommand:
    command: cmd.Command
    actor: Actor
    reply: Reply
    clicked: Clicked | None = None
    #: A Roll back / Pause click: the revision its button was posted for; the change runs only
    #: while the workload is still at it.
    at_revision: int | None = None


@dataclass(frozen=True)
class Decide:
    verb: str  # approve | reject | cancel | promotion-approve | promotion-halt
    approval_id: str
    actor: Actor
    reason: str
    reply: Reply


@dataclass(frozen=True)
class Notify:
    message: Message
    reply: Reply


Work = RunCommand | Decide | Notify
#: Hands acknowledged work on; never blocks the listener. It raises only when the bot is
#: stopping and takes no more work.
Dispatch = Callable[[Work], None]


def hand_on(dispatch: Dispatch, work: Work) -> bool:
    """Hands the work on, or says it could not: listeners run in the request's own thread and
    must answer every request, so a refusal is theirs to put into words, never a 500."""
    try:
        dispatch(work)
    except Exception as exc:
        log.warning("work not taken (the bot is stopping): %s", type(exc).__name__)
        return False
    return True


def not_taken_message(work: Work) -> Message:
    """What the author of work that arrived while the bot was stopping is told."""
    return blocks.error_message(
        f"The bot is restarting and did not run {_described(work)}. Nothing was changed: try "
        "again in a moment."
    )


def tell_not_taken(client: WebClient, work: Work) -> None:
    """For a click, whose ack Slack shows nothing of: the notice is posted from a thread of
    its own, so the ack still leaves at once."""
    threading.Thread(
        target=_tell, args=(client, work, not_taken_message(work)), daemon=True
    ).start()


def perform(services: Services, client: WebClient, work: Work) -> None:
    from handlers import promotions
    from handlers.approval_buttons import decide
    from handlers.commands import answer

    key = work.reply.request_key
    replier = work.reply.replier(client)
    try:
        if key is not None and not services.first_seen(key):
            log.warning("ignored a replayed request")
            return
    except StoreUnavailable as exc:
        # Without a confirmed replay record (Redis cannot say, or too few replicas hold it,
        # so a failover could lose it), a replay could run the change again later: a change
        # or a decision is refused; a read is answered.
        if _changes_something(work):
            log.warning("refused work: the replay check could not be confirmed (%s)", exc.cause)
            replier.ephemeral(blocks.error_message(exc.message + " Nothing was changed."))
            return
    match work:
        case RunCommand(command=command, actor=actor, clicked=clicked, at_revision=at_revision):
            outcome = answer(services, command, actor, replier, at_revision=at_revision)
            if clicked is not None and outcome is not None:
                from handlers.progress_buttons import replace_used_buttons

                replace_used_buttons(replier, clicked, outcome, actor)
        case RunCommand(command=command, actor=actor):
            answer(services, command, actor, replier)
        case Decide(verb=verb, approval_id=value, actor=actor) if verb in promotions.VERBS:
            promotions.decide(services, verb, value, actor, replier)
        case Decide(verb=verb, approval_id=approval_id, actor=actor, reason=reason):
            decide(services, verb, approval_id, actor, reason, replier)
        case Notify(message=message):
            replier.ephemeral(message)


def _changes_something(work: Work) -> bool:
    return isinstance(work, Decide) or (isinstance(work, RunCommand) and work.command.is_mutation)


_CLICKED = {
    "approve": "approval",
    "reject": "rejection",
    "cancel": "cancellation",
    "promotion-approve": "approval of the gate",
    "promotion-halt": "halt",
}


def _described(work: Work) -> str:
    """The work as its author knows it, for the notices about it."""
    match work:
        case RunCommand(command=command):
            return f"`/rollout {cmd.render_command(command)}`"
        case Decide(verb=verb, approval_id=approval_id):
            return f"your {_CLICKED[verb]} of request `{approval_id}`"
        case Notify():
            return "your click"


def interrupted_message(work: Work) -> Message:
    """What the author of work that a dead worker held is told: it may or may not have run."""
    check = (
        "Check with `/rollout approvals` before trying again."
        if isinstance(work, Decide)
        else "Check with `/rollout status` or `/rollout history` before trying again."
    )
    return blocks.error_message(
        f"The bot was interrupted while running {_described(work)}: it may or may not have "
        "taken effect. " + check
    )


def _tell(client: WebClient, work: Work, message: Message) -> None:
    try:
        work.reply.replier(client).ephemeral(message)
    except Exception as exc:  # Slack unreachable: the log is all that is left
        log.warning("could not tell a user what became of their work: %s", type(exc).__name__)


class InProcessWork:
    """Runs acknowledged work on a pool of this process's threads."""

    def __init__(self, services: Services, client: WebClient, threads: int) -> None:
        self._services = services
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="work")
        self._lock = threading.Lock()
        self._pending: set[Future[None]] = set()
        self._stopped = False

    def __call__(self, work: Work) -> None:
        self._submit(perform, self._services, self._client, work)

    def recover(self, work: Work) -> None:
        """Work a worker process died holding. A read runs again here; a change or an approval
        may have been made before the worker died, so it is not repeated: its author is told
        to look before trying again."""
        if isinstance(work, Notify) or (
            isinstance(work, RunCommand) and not work.command.is_mutation
        ):
            # Not a replay: the key was used by the attempt that died.
            self(replace(work, reply=replace(work.reply, request_key=None)))
            return
        self._submit(_tell, self._client, work, interrupted_message(work))

    def stop(self, timeout: float) -> None:
        """Takes no more work and gives what it has taken up to `timeout` seconds: the notices
        for work that stopping workers could not finish are among it, and each is the only
        word its author gets. Whatever is still queued then is dropped."""
        with self._lock:
            self._stopped = True
            pending = list(self._pending)
        wait(pending, timeout=timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, function: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._stopped:
                raise RuntimeError("the bot is stopping and takes no more work")
            future = self._pool.submit(function, *args)
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)
