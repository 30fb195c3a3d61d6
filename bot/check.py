"""`rollout-bot check`: validate the policy and every connection; print each problem.

`rollout-bot check --policy FILE` with no Slack token in the environment checks the file alone:
no network, no cluster, no Redis, so it runs anywhere (a laptop, CI) in well under a second.
With the bot's settings present it checks the connections too, as the running bot would use them.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import Settings

if TYPE_CHECKING:
    from bot.domain.policy import Policy

# The only setting the connection checks cannot do without: its absence means "offline".
_CREDENTIAL = "SLACK_BOT_TOKEN"
# Libraries that log their own retries and failures: `check` reports each outcome in one line.
_QUIET_LOGGERS = ("slack_sdk", "slack_bolt", "urllib3", "kubernetes", "redis")


def has_credentials() -> bool:
    """Whether the environment (or ROLLOUT_BOT_SECRETS_DIR) holds the bot's Slack token."""
    if os.environ.get(_CREDENTIAL):
        return True
    secrets_dir = os.environ.get("ROLLOUT_BOT_SECRETS_DIR")
    return bool(secrets_dir) and (Path(str(secrets_dir)) / _CREDENTIAL).is_file()


def check_policy_file(path: Path) -> int:
    """The offline check: the policy file's problems as `file:line: field: problem`."""
    from bot.domain.policy import PolicyError, load_policy

    try:
        load_policy(path)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    print(f"policy: {path} OK")
    return 0


def run_check(settings: Settings) -> int:
    from slack_sdk.errors import SlackApiError, SlackClientError

    from bot.composition.clusters import clusters_of
    from bot.composition.redis_clients import redis_client
    from bot.composition.slack_client import slack_client
    from bot.composition.startup_policy import policy_requirements
    from bot.domain.errors import RolloutBotError
    from bot.domain.policy import PolicyError, load_policy

    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    problems: list[str] = []
    policy = None
    if settings.policy_file is None:
        print("policy: none configured (ROLLOUT_BOT_POLICY unset): read-only commands only")
    else:
        try:
            policy = load_policy(settings.policy_file)
            # What start-up, and so a reload, refuses: a reload that was refused shows here.
            refused = policy_requirements(settings, policy)
            if not refused:
                print(f"policy: {settings.policy_file} OK")
            problems.extend(
                f"policy: {settings.policy_file}: not in force (start-up and reload refuse "
                f"it): {problem}"
                for problem in refused
            )
            if settings.state_key is not None:
                print("state key: set (approval requests, votes and tracked rollouts are sealed)")
        except PolicyError as exc:
            problems.extend(str(p) for p in exc.problems)
    where = "REDIS_URL"
    if settings.redis_sentinels:
        where = f"the primary of `{settings.redis_sentinel_master}` through REDIS_SENTINELS"
    try:
        redis_client(settings).ping()
        print("redis: OK")
    except Exception as exc:  # report the class only: the message may contain the URL
        problems.append(f"redis: cannot reach {where} ({type(exc).__name__})")
    try:
        contexts, clusters = clusters_of(settings)
        if policy is not None and settings.policy_file is not None:
            # Now that the contexts are known: a `contexts:` pattern matching none of them.
            try:
                load_policy(settings.policy_file, served_contexts=contexts.names)
            except PolicyError as exc:
                problems.extend(str(p) for p in exc.problems)
        for name, cluster in clusters.items():
            label = f"kubernetes ({name})" if contexts.multi else "kubernetes"
            if cluster.ready():
                print(f"{label}: OK")
            else:
                problems.append(f"{label}: the API server is not reachable or not ready")
        if contexts.multi:
            print(f"default context: {contexts.default}")
        if policy is not None:
            for name in sorted(policy.referenced_contexts()):
                if name not in contexts.names and name not in contexts.aliases:
                    problems.append(
                        f"policy: a channel is bound to context `{name}`, which the bot does "
                        f"not serve (ROLLOUT_BOT_CONTEXTS: {', '.join(contexts.names)})"
                    )
    except RolloutBotError as exc:
        problems.append(f"kubernetes: {exc.user_message}")
    try:
        # One attempt: a check reports what it finds, it does not wait out a bad token or
        # an unreachable API for the retries the running bot would make.
        slack = slack_client(settings)
        slack.retry_handlers = []
        slack.timeout = 5
        slack.auth_test()
        print("slack: OK")
    except SlackApiError as exc:
        problems.append(f"slack: SLACK_BOT_TOKEN rejected ({exc.response.get('error')})")
    except (SlackClientError, OSError) as exc:
        problems.append(f"slack: cannot reach SLACK_API_URL ({type(exc).__name__})")
    if policy is not None and any(rule.impersonates for rule in policy.identity):
        problems.extend(_identities(settings, policy))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def _identities(settings: Settings, policy: Policy) -> list[str]:
    """Impersonate mode: the Kubernetes identity each Slack user would act as (or why they
    cannot), per identity rule. Returns the problems."""
    from bot.adapters.slack.people import PeopleUnavailable, SlackPeople
    from bot.composition.slack_client import slack_client
    from bot.domain.identity import identity_of, refusal_of

    try:
        people = SlackPeople(slack_client(settings)).everyone()
    except PeopleUnavailable:
        return [
            "identity: cannot list the workspace's users (the impersonate-mode Slack app "
            "needs users:read and users:read.email: deploy/slack/manifest-*-impersonate.yaml)"
        ]
    for rule in policy.identity:
        where = ", ".join(rule.contexts)
        if not rule.impersonates:
            print(f"identity ({where}): the bot's own")
            continue
        reads = "as the person" if rule.reads_as_person else "as the bot"
        print(f"identity ({where}): impersonate, reads {reads}")
        for person in sorted(people, key=lambda p: p.handle):
            if person.deleted:
                continue
            refusal = refusal_of(rule, person)
            if refusal is not None:
                print(f"  {person.slack_id} @{person.handle}: refused: {refusal}")
                continue
            try:
                identity = identity_of(rule, person)
            except ValueError:
                print(f"  {person.slack_id} @{person.handle}: refused: no usable user name")
                continue
            print(f"  {person.slack_id} @{person.handle} -> {identity.describe()}")
    return []
