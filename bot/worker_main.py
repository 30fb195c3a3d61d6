"""What a worker process (bot.workers) performs acknowledged work with: a Runtime of its own,
built in the worker from the same settings, whose progress engine and metrics are the pool's
stand-ins (what they are given goes back to the main process).

It lives on the composition side, above bot.runtime, so that the pool imports neither the
Runtime nor the Slack surface: the composition root hands the pool this entry, never the other
way round.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from bot.composition.startup_policy import policy_requirements
from bot.config import load_settings
from bot.observability.logs import configure_logging
from bot.observability.metrics import Metrics
from bot.runtime import Runtime, keep_out_of_garbage_collection
from bot.services.periodic import Periodic
from bot.services.policy_reload import PolicyReloader
from bot.services.progress.publishing import Tracking
from handlers.perform import perform


def perform_in_worker(
    policy_bytes: bytes | None, tracking: Tracking, recorded: Metrics
) -> Callable[[Any], None]:
    """Builds this worker's world; returns what performs one item in it. See WorkerEntry."""
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    # The main process's policy in force: a file edit it refused must not stop this worker
    # from starting, nor put another policy in force here.
    runtime = Runtime(settings, policy_bytes=policy_bytes)
    runtime.services.progress = tracking
    if settings.policy_file is not None:
        # Each worker applies a policy edit too (the main process audits it).
        reloader = PolicyReloader(
            settings.policy_file,
            list(runtime.policy_users),
            None,
            recorded,
            cluster_name=settings.cluster_name,
            requirements=functools.partial(policy_requirements, settings),
            in_force=runtime.policy_bytes,
            served_contexts=runtime.contexts.names,
        )
        Periodic("policy-reload", settings.policy_reload_seconds, reloader.step).start()
    keep_out_of_garbage_collection()
    return functools.partial(perform, runtime.services, runtime.slack)
