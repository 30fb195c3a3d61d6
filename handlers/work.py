"""What a listener hands on after the ack: plain, picklable descriptions of the work, and the
one function that performs them, wherever that runs (a thread here, or a worker process).

    RunCommand   a typed /rollout command, or a Roll back / Pause click
    Decide       an Approve / Reject / Cancel click

A reply goes back through the interaction's response_url and the Web API, which any process
can use: nothing here holds a socket or a thread of the process that acknowledged it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from slack_bolt import Respond
from slack_sdk import WebClient

from bot.domain import commands as cmd
from bot.services.container import Services
from bot.services.rollouts import Actor
from handlers.replies import Replier


@dataclass(frozen=True)
class Reply:
    """Where the answers to one interaction go."""

    response_url: str | None
    channel: str

    def replier(self, client: WebClient) -> Replier:
        respond = Respond(response_url=self.response_url) if self.response_url else None
        return Replier(respond, client, self.channel)


@dataclass(frozen=True)
class RunCommand:
    command: cmd.Command
    actor: Actor
    reply: Reply


@dataclass(frozen=True)
class Decide:
    verb: str  # approve | reject | cancel
    approval_id: str
    actor: Actor
    reason: str
    reply: Reply


Work = RunCommand | Decide
#: Hands acknowledged work on; never blocks the listener.
Dispatch = Callable[[Work], None]


def perform(services: Services, client: WebClient, work: Work) -> None:
    from handlers.approval_buttons import decide
    from handlers.commands import answer

    replier = work.reply.replier(client)
    match work:
        case RunCommand(command=command, actor=actor):
            answer(services, command, actor, replier)
        case Decide(verb=verb, approval_id=approval_id, actor=actor, reason=reason):
            decide(services, verb, approval_id, actor, reason, replier)


class InProcessWork:
    """Runs acknowledged work on a pool of this process's threads."""

    def __init__(self, services: Services, client: WebClient, threads: int) -> None:
        self._services = services
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="work")

    def __call__(self, work: Work) -> None:
        self._pool.submit(perform, self._services, self._client, work)

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
