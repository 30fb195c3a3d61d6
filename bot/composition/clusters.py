"""The Kubernetes clusters the bot serves: which contexts, a client for each, and the clients
that make changes as the person who asked (the policy's `identity`)."""

from __future__ import annotations

import contextlib

from slack_sdk import WebClient

from bot.adapters.k8s import contexts as kube_contexts
from bot.adapters.k8s.cluster import KubeCluster, load_api_client
from bot.adapters.k8s.impersonation import ImpersonatingClients
from bot.adapters.slack.people import SlackPeople
from bot.config import Settings
from bot.domain.errors import RolloutBotError
from bot.domain.policy import Policy
from bot.services.clusters import Contexts
from bot.services.identity import Identities


def clusters_of(settings: Settings) -> tuple[Contexts, dict[str, KubeCluster]]:
    """The contexts served and a client for each (each its own pool and timeouts).

    Without ROLLOUT_BOT_CONTEXTS: the current context only (KUBECONFIG, else the service
    account, else ~/.kube/config), labelled ROLLOUT_BOT_CLUSTER_NAME, exactly as before; its
    kubeconfig name is accepted by `--context` too. Raises RolloutBotError naming a context
    that is not configured."""
    kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
    requested = settings.context_names()
    if not requested:
        name = settings.cluster_name
        cluster = KubeCluster(
            load_api_client(kubeconfig), name=name, timeout=settings.kube_timeout_seconds
        )
        aliases: dict[str, str] = {}
        with contextlib.suppress(RolloutBotError):
            current = kube_contexts.available(kubeconfig, name).current
            if current and current != name:
                aliases[current] = name
        return Contexts((name,), name, aliases), {name: cluster}
    available = kube_contexts.available(kubeconfig, settings.cluster_name)
    missing = [name for name in requested if name not in available.names]
    if missing:
        known = ", ".join(available.names) or "none"
        raise RolloutBotError(
            f"ROLLOUT_BOT_CONTEXTS names {', '.join(missing)}, which the kubeconfig does not "
            f"define (contexts: {known})."
        )
    clusters = {
        name: KubeCluster(
            kube_contexts.api_client(kubeconfig, name, in_cluster=name == available.in_cluster),
            name=name,
            timeout=settings.kube_timeout_seconds,
        )
        for name in requested
    }
    default = available.current if available.current in requested else requested[0]
    return Contexts(tuple(requested), default), clusters


def identities_of(
    settings: Settings,
    policy: Policy,
    slack: WebClient,
    contexts: Contexts,
    clusters: dict[str, KubeCluster],
) -> Identities:
    """As whom changes are made, per the policy's `identity`: clients that impersonate a
    person are made on demand, one per person, over each cluster's own connection pool."""
    impersonating = {
        name: ImpersonatingClients(
            cluster.api_client, name=name, timeout=settings.kube_timeout_seconds
        )
        for name, cluster in clusters.items()
    }
    return Identities(policy, SlackPeople(slack), impersonating, default_context=contexts.default)
