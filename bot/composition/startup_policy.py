"""The policy the bot starts with, and what start-up (and every reload) refuses about it
with the settings given: the policy file's bytes parsed once, and the key that seals what the
bot keeps in Redis.
"""

from __future__ import annotations

import secrets

from bot.config import Settings
from bot.domain.errors import RolloutBotError
from bot.domain.integrity import Sealer
from bot.domain.policy import Policy, parse_policy, read_only_default, read_policy_bytes
from bot.services.clusters import Contexts


def policy_of(
    settings: Settings, raw: bytes | None = None, contexts: Contexts | None = None
) -> tuple[Policy, bytes | None]:
    """The policy and the bytes it was parsed from (read from the file once unless given);
    no file: the read-only default, and None. With ``contexts``, a `contexts:` pattern that
    matches none of them is a PolicyError."""
    if settings.policy_file is None:
        return read_only_default(), None
    if raw is None:
        raw = read_policy_bytes(settings.policy_file)
    served = contexts.names if contexts is not None else None
    return parse_policy(raw, str(settings.policy_file), served_contexts=served), raw


STATE_KEY_REQUIRED = (
    "ROLLOUT_BOT_STATE_KEY is not set, but the policy configures approvals: without it, "
    "anything that can write to Redis could approve a change. Set it to a secret of at least "
    "32 bytes (e.g. `openssl rand -hex 32`), the same on every replica."
)


def policy_requirements(settings: Settings, policy: Policy) -> list[str]:
    """What start-up refuses about `policy` with these settings. A reload checks the same, so
    a policy the bot would not start with is never put in force by a reload either (with
    approvals but no state key, each process would seal with its own random key, and a click
    landing on another replica or worker would void the request as tampering)."""
    problems = []
    # Break-glass requests are approval requests too.
    if (
        policy.approvals or policy.break_glass is not None or policy.pipelines
    ) and settings.state_key is None:
        problems.append(STATE_KEY_REQUIRED)
    return problems


def sealer_for(settings: Settings, policy: Policy) -> Sealer:
    """The sealing key for what the bot keeps in Redis. Required when the policy configures
    approvals (and so `on_failure`); otherwise nothing sealed outlives this process, and a
    random key serves."""
    for problem in policy_requirements(settings, policy):
        raise RolloutBotError(problem)
    if settings.state_key is not None:
        return Sealer(settings.state_key.get_secret_value().encode())
    return Sealer(secrets.token_bytes(32))
