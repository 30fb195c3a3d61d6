"""Kubernetes clients that act as a person: every request carries `Impersonate-User`,
`Impersonate-Group` and `Impersonate-Extra-*` headers, so the API server authorizes (RBAC) and
audits the person, while the bot's own credentials only vouch for the impersonation.

    ImpersonatingClients(base, name=..., timeout=...)   one per cluster (the services'
                                  `PersonClusters` port)
        .cluster(identity)        a `KubeCluster` whose every request impersonates `identity`
        .as_person(bot, identity, reads_as_person=...)
                                  that cluster as a `PersonCluster`
        .review(identity, ...)    a SelfSubjectAccessReview as `identity`: may it do this?
    PersonCluster(reads, writes)  the `Cluster` port with writes (and, with `reads:
                                  impersonate`, reads) made as the person; their 403s in the
                                  API server's words, which name the person

One identity costs one small `ApiClient` and no connections: every identity's client sends
through the bot's own connection pool (the headers are per request, so sharing TLS
connections is safe), and the clients are kept in a bounded LRU.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from typing import Any, cast
from urllib.parse import quote

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.adapters.k8s.cluster import ClusterReads, Json, KubeCluster
from bot.domain.errors import ClusterUnavailable, Forbidden
from bot.domain.identity import AccessReview, KubeIdentity

log = logging.getLogger(__name__)

# Identities in use at once: the people active in the last minutes. An evicted one costs a
# rebuild of a small object on its next command, never a connection.
MAX_IDENTITIES = 256


def impersonation_headers(identity: KubeIdentity) -> list[tuple[str, str]]:
    """The headers client-go's impersonating transport sends: one `Impersonate-Group` per
    group and one `Impersonate-Extra-<key>` per value, the key percent-encoded (a `/` may not
    appear in a header name; the API server decodes it) and lower-case."""
    headers = [("Impersonate-User", identity.user)]
    headers += [("Impersonate-Group", group) for group in identity.groups]
    for key, values in identity.extra:
        name = "Impersonate-Extra-" + quote(key.lower(), safe="-!#$&'*+.^_`|~")
        headers += [(name, value) for value in values]
    return headers


class _ImpersonatingTransport:
    """Sends through the bot's shared transport, adding the impersonation headers to each
    request (repeated headers: the client's own default headers are one value per name)."""

    def __init__(self, shared: Any, headers: list[tuple[str, str]]) -> None:
        self._shared = shared
        self._headers = headers

    def request(self, method: str, url: str, headers: Any = None, **kwargs: Any) -> Any:
        merged = urllib3.HTTPHeaderDict(headers or {})
        for name, value in self._headers:
            merged.add(name, value)
        return self._shared.request(method, url, headers=merged, **kwargs)

    def close(self) -> None:
        """The pool is the bot's: an evicted identity must not close it."""


class ImpersonationRefused(Forbidden):
    """The bot's own identity may not impersonate this user, group or extra field."""

    def __init__(self, cluster: str) -> None:
        super().__init__(
            f"The bot is not allowed to act as you in cluster `{cluster}`: its own Kubernetes "
            "identity lacks the `impersonate` permission for your user, groups or its extra "
            "fields. Nothing was changed. Ask a cluster admin to install the chart with "
            "`identity.mode=impersonate` (and to list you in `identity.resourceNames`, if "
            "they narrow it)."
        )


class ImpersonatingClients:
    def __init__(
        self,
        base: k8s.ApiClient,
        *,
        name: str,
        timeout: float = 10.0,
        capacity: int = MAX_IDENTITIES,
    ) -> None:
        self._base = base
        self.name = name
        self._timeout = timeout
        self._capacity = capacity
        self._clients: OrderedDict[KubeIdentity, tuple[k8s.ApiClient, KubeCluster]] = OrderedDict()
        self._lock = threading.Lock()

    def cluster(self, identity: KubeIdentity) -> KubeCluster:
        return self._entry(identity)[1]

    def as_person(
        self, bot: ClusterReads, identity: KubeIdentity, *, reads_as_person: bool
    ) -> PersonCluster:
        """The cluster `bot` reaches, with writes (and, with `reads_as_person`, reads) made as
        `identity`."""
        return PersonCluster(bot, self.cluster(identity), reads_as_person=reads_as_person)

    def _entry(self, identity: KubeIdentity) -> tuple[k8s.ApiClient, KubeCluster]:
        with self._lock:
            found = self._clients.get(identity)
            if found is not None:
                self._clients.move_to_end(identity)
                return found
        api = self._client(identity)
        made = (api, KubeCluster(api, name=self.name, timeout=self._timeout))
        with self._lock:
            self._clients[identity] = made
            while len(self._clients) > self._capacity:
                self._clients.popitem(last=False)
        return made

    def __len__(self) -> int:
        return len(self._clients)

    def _client(self, identity: KubeIdentity) -> k8s.ApiClient:
        api = k8s.ApiClient(self._base.configuration)
        # The fresh client's own pool holds no connection yet; it is replaced by the shared one.
        api.rest_client.close()
        transport = _ImpersonatingTransport(self._base.rest_client, impersonation_headers(identity))
        api.rest_client = cast(Any, transport)
        return api

    def review(
        self,
        identity: KubeIdentity,
        verb: str,
        resource: str,
        group: str,
        namespace: str,
        name: str,
    ) -> AccessReview:
        """Asks the API server, as `identity`, whether it may `verb` the object (a
        SelfSubjectAccessReview: every authenticated user may ask about themselves).
        Raises ImpersonationRefused or ClusterUnavailable."""
        body = k8s.V1SelfSubjectAccessReview(
            api_version="authorization.k8s.io/v1",
            kind="SelfSubjectAccessReview",
            spec=k8s.V1SelfSubjectAccessReviewSpec(
                resource_attributes=k8s.V1ResourceAttributes(
                    verb=verb,
                    resource=resource,
                    group=group,
                    namespace=namespace,
                    name=name or None,
                )
            ),
        )
        api = k8s.AuthorizationV1Api(self._entry(identity)[0])
        try:
            response: Any = api.create_self_subject_access_review(
                body,
                _preload_content=False,
                _request_timeout=(min(3.0, self._timeout), self._timeout),
            )
            status = json.loads(response.data or b"{}").get("status") or {}
        except ApiException as exc:
            if exc.status == 403:
                raise ImpersonationRefused(self.name) from None
            log.warning("access review in %s failed: HTTP %s", self.name, exc.status)
            raise ClusterUnavailable(
                f"The Kubernetes API server of cluster `{self.name}` could not say whether you "
                "may do this. Nothing was changed; try again shortly."
            ) from None
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            log.warning("access review in %s failed: %s", self.name, type(exc).__name__)
            raise ClusterUnavailable(
                f"The Kubernetes API server of cluster `{self.name}` did not answer in time "
                "(while checking what you may do). Nothing was changed; try again shortly."
            ) from None
        return AccessReview(bool(status.get("allowed")), str(status.get("reason") or ""))


def refusal_for_person(exc: Forbidden, cluster: str) -> Forbidden:
    """A 403 from a request made as a person: the API server's words (which name the person),
    as kubectl prints them, and what to do; or, when the bot itself may not impersonate, what
    an admin has to grant."""
    detail = exc.detail
    if "cannot impersonate" in detail:
        return ImpersonationRefused(cluster)
    if not detail:
        return exc
    return Forbidden(
        f"Error from server (Forbidden): {detail}\nNothing was changed. Kubernetes RBAC "
        "decides what you may do here: ask the cluster's admins for a RoleBinding that "
        "grants it to you.",
        detail=detail,
    )


class PersonCluster:
    """The `Cluster` port for one person: writes as them; reads as them too with `reads:
    impersonate`, else with the bot's identity."""

    def __init__(self, bot: ClusterReads, person: KubeCluster, *, reads_as_person: bool) -> None:
        self.name = bot.name
        self._bot = bot
        self._person = person
        self._reads: ClusterReads = person if reads_as_person else bot

    def _as_person(self, exc: Forbidden) -> Forbidden:
        return refusal_for_person(exc, self.name)

    # -- reads -----------------------------------------------------------------------------------

    def get_deployment(self, namespace: str, name: str) -> Json:
        return self.get_workload("deployment", namespace, name)

    def list_deployments(self, namespace: str) -> list[Json]:
        return self.list_workloads("deployment", namespace)

    def get_workload(self, kind: str, namespace: str, name: str) -> Json:
        try:
            return self._reads.get_workload(kind, namespace, name)
        except Forbidden as exc:
            raise self._read_refusal(exc) from None

    def list_workloads(self, kind: str, namespace: str) -> list[Json]:
        try:
            return self._reads.list_workloads(kind, namespace)
        except Forbidden as exc:
            raise self._read_refusal(exc) from None

    def list_controller_revisions(self, namespace: str, selector: str) -> list[Json]:
        try:
            return self._reads.list_controller_revisions(namespace, selector)
        except Forbidden as exc:
            raise self._read_refusal(exc) from None

    def list_autoscalers(self, namespace: str) -> list[Json]:
        return self._reads.list_autoscalers(namespace)

    def list_replica_sets(self, namespace: str, selector: str) -> list[Json]:
        try:
            return self._reads.list_replica_sets(namespace, selector)
        except Forbidden as exc:
            raise self._read_refusal(exc) from None

    def list_pods(self, namespace: str, selector: str) -> list[Json]:
        try:
            return self._reads.list_pods(namespace, selector)
        except Forbidden as exc:
            raise self._read_refusal(exc) from None

    def list_events(self, namespace: str, involved_names: set[str]) -> list[Json]:
        return self._reads.list_events(namespace, involved_names)

    def list_services(self, namespace: str) -> list[Json]:
        return self._reads.list_services(namespace)

    def namespace_exists(self, namespace: str) -> bool | None:
        # Whether a namespace exists is the bot's question, for a clearer reply.
        return self._bot.namespace_exists(namespace)

    def ready(self) -> bool:
        return self._bot.ready()

    def _read_refusal(self, exc: Forbidden) -> Forbidden:
        return self._as_person(exc) if self._reads is self._person else exc

    # -- writes ----------------------------------------------------------------------------------

    def create_deployment(self, namespace: str, manifest: Json) -> Json:
        try:
            return self._person.create_deployment(namespace, manifest)
        except Forbidden as exc:
            raise self._as_person(exc) from None

    def delete_deployment(self, namespace: str, name: str, *, uid: str) -> None:
        try:
            self._person.delete_deployment(namespace, name, uid=uid)
        except Forbidden as exc:
            raise self._as_person(exc) from None

    def patch_deployment(
        self, namespace: str, name: str, patch: Json | list[Json], *, field_manager: str
    ) -> Json:
        return self.patch_workload(
            "deployment", namespace, name, patch, field_manager=field_manager
        )

    def patch_workload(
        self, kind: str, namespace: str, name: str, patch: Json | list[Json], *, field_manager: str
    ) -> Json:
        try:
            return self._person.patch_workload(
                kind, namespace, name, patch, field_manager=field_manager
            )
        except Forbidden as exc:
            raise self._as_person(exc) from None
