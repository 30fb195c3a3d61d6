"""`rollout-bot check`: validate the policy and every connection; print each problem."""

from __future__ import annotations

import sys

from bot.config import Settings


def run_check(settings: Settings) -> int:
    from slack_sdk.errors import SlackApiError, SlackClientError

    from bot.adapters.k8s.cluster import KubeCluster, load_api_client
    from bot.domain.errors import RolloutBotError
    from bot.domain.policy import PolicyError, load_policy
    from bot.runtime import STATE_KEY_REQUIRED, redis_client, slack_client

    problems: list[str] = []
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
        cluster = KubeCluster(
            load_api_client(str(settings.kubeconfig) if settings.kubeconfig else None),
            timeout=settings.kube_timeout_seconds,
        )
        if cluster.ready():
            print("kubernetes: OK")
        else:
            problems.append("kubernetes: the API server is not reachable or not ready")
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
