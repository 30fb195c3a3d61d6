"""`rollout-bot check`: validate the policy and every connection; print each problem."""

from __future__ import annotations

import sys

from bot.config import Settings


def run_check(settings: Settings) -> int:
    from slack_sdk.errors import SlackApiError, SlackClientError

    from bot.domain.errors import RolloutBotError
    from bot.domain.policy import PolicyError, load_policy
    from bot.runtime import STATE_KEY_REQUIRED, clusters_of, redis_client, slack_client

    problems: list[str] = []
    policy = None
    if settings.policy_file is None:
        print("policy: none configured (ROLLOUT_BOT_POLICY unset): read-only commands only")
    else:
        try:
            policy = load_policy(settings.policy_file)
            print(f"policy: {settings.policy_file} OK")
            if policy.approvals and settings.state_key is None:
                problems.append(f"state key: {STATE_KEY_REQUIRED}")
            elif settings.state_key is not None:
                print("state key: set (approval requests, votes and tracked rollouts are sealed)")
        except PolicyError as exc:
            problems.extend(str(p) for p in exc.problems)
    try:
        redis_client(settings).ping()
        print("redis: OK")
    except Exception as exc:  # report the class only: the message may contain the URL
        problems.append(f"redis: cannot reach REDIS_URL ({type(exc).__name__})")
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
        slack_client(settings).auth_test()
        print("slack: OK")
    except SlackApiError as exc:
        problems.append(f"slack: SLACK_BOT_TOKEN rejected ({exc.response.get('error')})")
    except (SlackClientError, OSError) as exc:
        problems.append(f"slack: cannot reach SLACK_API_URL ({type(exc).__name__})")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0
