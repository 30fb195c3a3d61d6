"""Each adapter still fits the port the services declare for it (`bot.services.ports`).

Adapters implement the ports structurally and never import them, so nothing but this test
notices when an adapter's method is renamed or loses a parameter. No Redis, Slack or cluster
is needed: the check compares method names and parameters.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from bot.adapters.k8s.cluster import ClusterReads, KubeCluster
from bot.adapters.k8s.impersonation import ImpersonatingClients, PersonCluster
from bot.adapters.k8s.watch import NamespaceWatch
from bot.adapters.redis.approvals import RedisApprovalStore
from bot.adapters.redis.audit import RedisAuditLog
from bot.adapters.redis.canaries import RedisCanaryRegistry
from bot.adapters.redis.freezes import RedisFreezeStore
from bot.adapters.redis.lease import RedisLeases
from bot.adapters.redis.promotions import RedisPromotionStore
from bot.adapters.redis.tracking import RedisRolloutRegistry
from bot.adapters.slack.directory import SlackDirectory
from bot.adapters.slack.people import SlackPeople
from bot.services import ports

PAIRS: list[tuple[type[Any], type[Any]]] = [
    (ports.Cluster, KubeCluster),
    (ports.Cluster, PersonCluster),
    (ClusterReads, KubeCluster),
    (ports.Watch, NamespaceWatch),
    (ports.AuditLog, RedisAuditLog),
    (ports.ApprovalStore, RedisApprovalStore),
    (ports.Leases, RedisLeases),
    (ports.Directory, SlackDirectory),
    (ports.People, SlackPeople),
    (ports.PersonClusters, ImpersonatingClients),
    (ports.FreezeStore, RedisFreezeStore),
    (ports.PromotionStore, RedisPromotionStore),
    (ports.CanaryStore, RedisCanaryRegistry),
    (ports.RolloutRegistry, RedisRolloutRegistry),
]


def port_methods(port: type[Any]) -> dict[str, Any]:
    return {
        name: member
        for name, member in vars(port).items()
        if callable(member) and not name.startswith("_")
    }


def shape(function: Any) -> list[tuple[str, Any, bool]]:
    """Each parameter's name, kind and whether it has a default (`self` left out)."""
    parameters = list(inspect.signature(function).parameters.values())[1:]
    return [(p.name, p.kind, p.default is not inspect.Parameter.empty) for p in parameters]


@pytest.mark.parametrize(("port", "adapter"), PAIRS, ids=lambda c: getattr(c, "__name__", str(c)))
def test_adapter_has_every_port_method_with_the_same_parameters(
    port: type[Any], adapter: type[Any]
) -> None:
    methods = port_methods(port)
    assert methods, f"{port.__name__} declares no method"
    for name, declared in methods.items():
        implemented = getattr(adapter, name, None)
        assert implemented is not None, f"{adapter.__name__} lacks {port.__name__}.{name}"
        assert shape(implemented) == shape(declared), (
            f"{adapter.__name__}.{name} differs from {port.__name__}.{name}"
        )


def test_the_check_catches_a_missing_method() -> None:
    """The comparison above can fail: an adapter without `release` is not `Leases`."""

    class Incomplete:
        def hold(self, rollout_id: str) -> bool:
            return True

        def held(self) -> list[str]:
            return []

    with pytest.raises(AssertionError):
        test_adapter_has_every_port_method_with_the_same_parameters(ports.Leases, Incomplete)
