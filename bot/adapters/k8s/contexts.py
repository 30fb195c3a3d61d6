"""Which clusters the bot can reach, kubectl's way: kubeconfig contexts.

`KUBECONFIG` may list several files (`a:b:c`); they are merged as kubectl merges them: the
first file to define a context (or cluster, or user) name wins, and so does the first file
that sets `current-context`. Inside a cluster, the bot's own cluster is reachable through its
service account as one more context, named by the caller (ROLLOUT_BOT_CLUSTER_NAME).

    available(kubeconfig, in_cluster_name)   every context name and the current one
    api_client(kubeconfig, context)          a client for one context (its own pool, its own
                                             timeouts: one cluster never waits for another)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from bot.domain.errors import ClusterError

__all__ = ["Available", "api_client", "available", "kubeconfig_files"]


@dataclass(frozen=True)
class Available:
    #: Context names, in kubeconfig order (the in-cluster one first when there is one).
    names: tuple[str, ...]
    #: kubectl's current context (the first file's that sets one), or the in-cluster one.
    current: str | None
    #: The name of the in-cluster context, when the bot runs in a cluster.
    in_cluster: str | None = None


def kubeconfig_files(kubeconfig: str | None) -> list[str]:
    """The existing files a KUBECONFIG value names, in order (missing ones are skipped, as
    kubectl skips them)."""
    if not kubeconfig:
        return []
    paths = [os.path.expanduser(part) for part in kubeconfig.split(os.pathsep) if part]
    return [path for path in paths if os.path.exists(path)]


def _current_context(files: list[str]) -> str | None:
    for path in files:
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle)
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("current-context"):
            return str(data["current-context"])
    return None


def _in_cluster_available() -> bool:
    try:
        k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=k8s.Configuration()
        )
    except ConfigException:
        return False
    return True


def available(kubeconfig: str | None, in_cluster_name: str) -> Available:
    """Every context the bot could serve. Raises ClusterError when there is none at all."""
    names: list[str] = []
    in_cluster: str | None = None
    if _in_cluster_available():
        in_cluster = in_cluster_name
        names.append(in_cluster_name)
    files = kubeconfig_files(kubeconfig)
    if not files and in_cluster is None and not kubeconfig:
        default = os.path.expanduser("~/.kube/config")
        files = [default] if os.path.exists(default) else []
    current: str | None = None
    if files:
        try:
            contexts, _ = k8s_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=os.pathsep.join(files)
            )
        except (ConfigException, OSError, TypeError, ValueError, yaml.YAMLError) as exc:
            raise ClusterError(
                "Cannot read the kubeconfig named by KUBECONFIG: check that every file in it "
                "is a valid kubeconfig."
            ) from exc
        for context in contexts or []:
            name = str(context.get("name") or "")
            if name and name not in names:
                names.append(name)
        current = _current_context(files)
    if not names:
        raise ClusterError(
            "Cannot load the Kubernetes configuration: set KUBECONFIG to a readable kubeconfig "
            "or run the bot inside a cluster with a service account."
        )
    if current is None or current not in names:
        current = in_cluster if in_cluster is not None else None
    return Available(tuple(names), current, in_cluster)


def api_client(kubeconfig: str | None, context: str, *, in_cluster: bool = False) -> k8s.ApiClient:
    """A client for one context, with the bot's settings: no urllib3 retries (we decide what
    to retry), a pool sized for the listener threads."""
    configuration = k8s.Configuration()
    try:
        if in_cluster:
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        else:
            files = kubeconfig_files(kubeconfig) or [os.path.expanduser("~/.kube/config")]
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.pathsep.join(files),
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        raise ClusterError(
            f"Cannot load the Kubernetes configuration of context `{context}`: check its "
            "cluster, user and certificates in the kubeconfig."
        ) from exc
    configuration.retries = False
    configuration.connection_pool_maxsize = 32
    return k8s.ApiClient(configuration)
