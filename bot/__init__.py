"""rollout-bot: Kubernetes Deployment rollouts driven from Slack, with kubectl's semantics."""
