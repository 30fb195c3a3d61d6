"""The worker side of the hand-off: performs the work a listener handed on (`handlers.handoff`),
wherever that runs (a thread of this process, `InProcessWork`, or a worker process, which
calls `perform`).

Performing is calling the use cases, through `handlers.answers` and `handlers.decisions`:
this module imports no listener, so nothing here calls back into the code that acknowledged
the request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

from slack_sdk import WebClient

from bot.domain.errors import StoreUnavailable
from bot.services.use_cases import Services
from handlers.answers import answer, replace_used_buttons
from handlers.decisions import decide_approval, decide_gate
from handlers.handoff import (
    PROMOTION_VERBS,
    Decide,
    Notify,
    RunCommand,
    Work,
    interrupted_message,
    tell,
)
from handlers.views.message import error_message

log = logging.getLogger(__name__)


def perform(services: Services, client: WebClient, work: Work) -> None:
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
            replier.ephemeral(error_message(exc.message + " Nothing was changed."))
            return
    match work:
        case RunCommand(command=command, actor=actor, clicked=clicked, at_revision=at_revision):
            outcome = answer(services, command, actor, replier, at_revision=at_revision)
            if clicked is not None and outcome is not None:
                replace_used_buttons(replier, clicked, outcome, actor)
        case Decide(verb=verb, approval_id=value, actor=actor) if verb in PROMOTION_VERBS:
            decide_gate(services, verb, value, actor, replier)
        case Decide(verb=verb, approval_id=approval_id, actor=actor, reason=reason):
            decide_approval(services, verb, approval_id, actor, reason, replier)
        case Notify(message=message):
            replier.ephemeral(message)


def _changes_something(work: Work) -> bool:
    return isinstance(work, Decide) or (isinstance(work, RunCommand) and work.command.is_mutation)


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
        self._submit(tell, self._client, work, interrupted_message(work))

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
