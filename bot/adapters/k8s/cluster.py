"""The cluster adapter on the official kubernetes client (`KubeCluster`).

It implements the services' `Cluster` port (`bot.services.ports`) structurally, without
importing it: adapters sit below the services.

Objects cross this boundary as plain dicts in the API's own JSON shape (camelCase), which is
what `bot.domain.status` reasons about; the client's model classes never leak out. Every call
has a timeout, and every failure becomes one of the `bot.domain.errors.ClusterError` classes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from bot.domain.errors import (
    ClusterError,
    ClusterUnavailable,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    OutcomeUnknown,
)
from bot.observability.metrics import metrics

Json = dict[str, Any]
T = TypeVar("T")
log = logging.getLogger(__name__)

FIELD_MANAGER = "rollout-bot"
# Honour the API server's Retry-After twice, waiting at most 3 s each time: enough for
# priority-and-fairness to let us in, short enough to answer the user within seconds.
THROTTLE_RETRIES = 2
MAX_RETRY_AFTER = 3.0
READ_RETRY_PAUSE = 0.5
_READ_VERBS = frozenset({"get", "list"})
# Verbs whose request, once sent, may be applied even if its answer is lost.
_WRITE_VERBS = frozenset({"create", "patch"})


class ClusterReads(Protocol):
    """The reads `PersonCluster` may send as the bot instead of as the person. Declared here,
    beside `KubeCluster`, because an adapter may not import the services' `Cluster` port; the
    two are structural, so any `Cluster` is one of these."""

    name: str

    def get_workload(self, kind: str, namespace: str, name: str) -> Json: ...
    def list_workloads(self, kind: str, namespace: str) -> list[Json]: ...
    def list_controller_revisions(self, namespace: str, selector: str) -> list[Json]: ...
    def list_autoscalers(self, namespace: str) -> list[Json]: ...
    def list_replica_sets(self, namespace: str, selector: str) -> list[Json]: ...
    def list_pods(self, namespace: str, selector: str) -> list[Json]: ...
    def list_events(self, namespace: str, involved_names: set[str]) -> list[Json]: ...
    def list_services(self, namespace: str) -> list[Json]: ...
    def namespace_exists(self, namespace: str) -> bool | None: ...
    def ready(self) -> bool: ...


def load_api_client(kubeconfig: str | None) -> k8s.ApiClient:
    """KUBECONFIG when given, else in-cluster config, else ~/.kube/config."""
    configuration = k8s.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration
            )
        else:
            try:
                k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
            except ConfigException:
                k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        raise ClusterError(
            "Cannot load the Kubernetes configuration: set KUBECONFIG to a readable kubeconfig "
            "or run the bot inside a cluster with a service account."
        ) from exc
    # The client's own urllib3 retries would multiply our timeouts; we decide what to retry.
    configuration.retries = False
    # Enough pooled connections for the listener threads that talk to the API at once.
    configuration.connection_pool_maxsize = 32
    return k8s.ApiClient(configuration)


class KubeCluster:
    def __init__(
        self, api_client: k8s.ApiClient, *, name: str = "default", timeout: float = 10.0
    ) -> None:
        self.name = name
        self._api = api_client
        self._apps = k8s.AppsV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._autoscaling = k8s.AutoscalingV2Api(api_client)
        # (connect, read): a dead address fails fast; a slow apiserver gets the full budget.
        self._timeout = (min(3.0, timeout), timeout)

    @property
    def api_client(self) -> k8s.ApiClient:
        """The client this cluster is reached with (its configuration and connection pool)."""
        return self._api

    # -- reads -----------------------------------------------------------------------------------

    def get_deployment(self, namespace: str, name: str) -> Json:
        return self._call(
            "get",
            "deployments",
            namespace,
            lambda: self._apps.read_namespaced_deployment(
                name, namespace, _preload_content=False, _request_timeout=self._timeout
            ),
            name=name,
        )

    def list_deployments(self, namespace: str) -> list[Json]:
        return self._paged("deployments", namespace, self._apps.list_namespaced_deployment)

    def get_workload(self, kind: str, namespace: str, name: str) -> Json:
        resource, read, _, _ = self._kind(kind)
        return self._call(
            "get",
            resource,
            namespace,
            lambda: read(name, namespace, _preload_content=False, _request_timeout=self._timeout),
            name=name,
        )

    def list_workloads(self, kind: str, namespace: str) -> list[Json]:
        resource, _, list_method, _ = self._kind(kind)
        return self._paged(resource, namespace, list_method)

    def list_controller_revisions(self, namespace: str, selector: str) -> list[Json]:
        return self._paged(
            "controllerrevisions",
            namespace,
            self._apps.list_namespaced_controller_revision,
            label_selector=selector,
        )

    def list_autoscalers(self, namespace: str) -> list[Json]:
        return self._paged(
            "horizontalpodautoscalers",
            namespace,
            self._autoscaling.list_namespaced_horizontal_pod_autoscaler,
        )

    def list_replica_sets(self, namespace: str, selector: str) -> list[Json]:
        return self._paged(
            "replicasets",
            namespace,
            self._apps.list_namespaced_replica_set,
            label_selector=selector,
        )

    def list_pods(self, namespace: str, selector: str) -> list[Json]:
        return self._paged(
            "pods", namespace, self._core.list_namespaced_pod, label_selector=selector
        )

    def list_services(self, namespace: str) -> list[Json]:
        return self._paged("services", namespace, self._core.list_namespaced_service)

    def list_events(self, namespace: str, involved_names: set[str]) -> list[Json]:
        events = self._paged(
            "events", namespace, self._core.list_namespaced_event, field_selector="type=Warning"
        )
        return [e for e in events if e.get("involvedObject", {}).get("name") in involved_names]

    def deployments_snapshot(self, namespace: str) -> tuple[list[Json], str]:
        return self.workloads_snapshot("deployment", namespace)

    def watch_deployments(
        self, namespace: str, resource_version: str, timeout_seconds: int = 300
    ) -> Iterator[tuple[str, Json]]:
        return self.watch_workloads("deployment", namespace, resource_version, timeout_seconds)

    def workloads_snapshot(self, kind: str, namespace: str) -> tuple[list[Json], str]:
        """Every object of `kind` in the namespace and the list's resourceVersion (to watch
        from)."""
        resource, _, list_method, _ = self._kind(kind)
        body = self._call(
            "list",
            resource,
            namespace,
            lambda: list_method(namespace, _preload_content=False, _request_timeout=self._timeout),
        )
        return list(body.get("items") or []), str(body.get("metadata", {}).get("resourceVersion"))

    def watch_workloads(
        self, kind: str, namespace: str, resource_version: str, timeout_seconds: int = 300
    ) -> Iterator[tuple[str, Json]]:
        """(type, object) events until the server ends the watch; ERROR events included.

        One watch per (namespace, kind) feeds every tracked rollout there: no polling per
        rollout.
        """
        resource, _, list_method, _ = self._kind(kind)
        response = self._call_raw(
            "watch",
            resource,
            namespace,
            lambda: list_method(
                namespace,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                # The server closes the watch after timeout_seconds; a silent connection for
                # longer than that plus a margin is dead.
                _request_timeout=(self._timeout[0], timeout_seconds + 30),
            ),
        )
        buffer = b""
        try:
            for chunk in response.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        yield str(event.get("type")), event.get("object") or {}
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterUnavailable(f"the watch on `{namespace}` was interrupted") from exc
        finally:
            response.release_conn()

    def namespace_exists(self, namespace: str) -> bool | None:
        """True/False, or None when the bot may not read namespaces (then we cannot tell)."""
        try:
            self._core.read_namespace(
                namespace, _preload_content=False, _request_timeout=self._timeout
            )
        except ApiException as exc:
            metrics().kube_call("get", "namespaces", code=exc.status or 0)
            if exc.status == 404:
                return False
            return None
        except (urllib3.exceptions.HTTPError, OSError):
            metrics().kube_call("get", "namespaces", code=0)
            return None
        metrics().kube_call("get", "namespaces")
        return True

    def ready(self) -> bool:
        try:
            response = self._api.call_api(
                "GET", self._api.configuration.host + "/readyz", _request_timeout=self._timeout
            )
            response.read()  # type: ignore[no-untyped-call]
            return bool(response.status == 200)
        except (ApiException, urllib3.exceptions.HTTPError, OSError):
            return False

    # -- writes ----------------------------------------------------------------------------------

    def create_deployment(self, namespace: str, manifest: Json) -> Json:
        return self._call(
            "create",
            "deployments",
            namespace,
            lambda: self._apps.create_namespaced_deployment(
                namespace,
                _deployment_model(manifest),
                field_manager=FIELD_MANAGER,
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
            name=manifest.get("metadata", {}).get("name"),
        )

    def delete_deployment(self, namespace: str, name: str, *, uid: str) -> None:
        """Deletes the Deployment with this uid only (a new one under the same name is another
        object: 409), its ReplicaSets and pods in the background, as `kubectl delete` does."""
        self._call(
            "delete",
            "deployments",
            namespace,
            lambda: self._apps.delete_namespaced_deployment(
                name,
                namespace,
                body=k8s.V1DeleteOptions(
                    preconditions=k8s.V1Preconditions(uid=uid),
                    propagation_policy="Background",
                ),
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
            name=name,
        )

    def patch_deployment(
        self, namespace: str, name: str, patch: Json | list[Json], *, field_manager: str
    ) -> Json:
        return self.patch_workload(
            "deployment", namespace, name, patch, field_manager=field_manager
        )

    def patch_workload(
        self, kind: str, namespace: str, name: str, patch: Json | list[Json], *, field_manager: str
    ) -> Json:
        # A dict body is sent as a strategic-merge patch, a list as a JSON patch (kubectl's
        # choices for set image/pause/resume/restart and for undo respectively).
        content_type = (
            "application/json-patch+json"
            if isinstance(patch, list)
            else "application/strategic-merge-patch+json"
        )
        resource, _, _, patch_method = self._kind(kind)
        return self._call(
            "patch",
            resource,
            namespace,
            lambda: patch_method(
                name,
                namespace,
                patch,
                field_manager=field_manager,
                _content_type=content_type,
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
            name=name,
        )

    # -- plumbing --------------------------------------------------------------------------------

    def _kind(
        self, kind: str
    ) -> tuple[str, Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
        """(resource, read, list, patch) of the AppsV1 API for a workload kind."""
        apps = self._apps
        if kind == "statefulset":
            return (
                "statefulsets",
                apps.read_namespaced_stateful_set,
                apps.list_namespaced_stateful_set,
                apps.patch_namespaced_stateful_set,
            )
        if kind == "daemonset":
            return (
                "daemonsets",
                apps.read_namespaced_daemon_set,
                apps.list_namespaced_daemon_set,
                apps.patch_namespaced_daemon_set,
            )
        if kind == "deployment":
            return (
                "deployments",
                apps.read_namespaced_deployment,
                apps.list_namespaced_deployment,
                apps.patch_namespaced_deployment,
            )
        raise ValueError(f"not a workload kind: {kind!r}")

    def _paged(
        self, resource: str, namespace: str, method: Callable[..., Any], **params: Any
    ) -> list[Json]:
        """Every item of a namespaced list, 500 per page, following `continue` tokens."""
        return self._list(
            resource,
            namespace,
            lambda cont: method(
                namespace,
                limit=500,
                _continue=cont,
                _preload_content=False,
                _request_timeout=self._timeout,
                **params,
            ),
        )

    def _list(self, resource: str, namespace: str, page: Callable[[str | None], Any]) -> list[Json]:
        items: list[Json] = []
        cont: str | None = None
        while True:
            body = self._call(
                "list",
                resource,
                namespace,
                lambda c=cont: page(c),  # type: ignore[misc]
            )
            items.extend(body.get("items") or [])
            cont = (body.get("metadata") or {}).get("continue") or None
            if not cont:
                return items

    def _call_raw(
        self, verb: str, resource: str, namespace: str, request: Callable[[], Any]
    ) -> Any:
        try:
            response = request()
            metrics().kube_call(verb, resource)
            return response
        except ApiException as exc:
            metrics().kube_call(verb, resource, code=exc.status or 0)
            raise _translate(exc, verb, resource, namespace, None) from None
        except (urllib3.exceptions.HTTPError, OSError):
            metrics().kube_call(verb, resource, code=0)
            raise ClusterUnavailable(
                f"The Kubernetes API server of cluster `{self.name}` did not answer "
                f"(while trying to {verb} {resource})."
            ) from None

    def _with_throttling(self, verb: str, request: Callable[[], Any]) -> Any:
        """429 means the API server did not process the request: wait as it asks and retry.
        A 5xx on a read is retried once after a short pause (reads are safe to repeat; writes
        are not, since a 5xx can follow an applied change).

        The waits are bounded so a listener thread is never held for long; past the bound the
        caller gets the error as a clear "try again shortly".
        """
        for attempt in range(THROTTLE_RETRIES + 1):
            try:
                return request()
            except ApiException as exc:
                if attempt == THROTTLE_RETRIES:
                    raise
                if exc.status == 429:
                    time.sleep(_retry_after(exc))
                elif exc.status in (500, 502, 503, 504) and verb in _READ_VERBS and attempt == 0:
                    time.sleep(READ_RETRY_PAUSE)
                else:
                    raise
        raise AssertionError("unreachable")

    def _call(
        self,
        verb: str,
        resource: str,
        namespace: str,
        request: Callable[[], Any],
        *,
        name: str | None = None,
    ) -> Json:
        try:
            response = self._with_throttling(verb, request)
            body: Json = json.loads(response.data or b"{}")
            metrics().kube_call(verb, resource)
            return body
        except ApiException as exc:
            metrics().kube_call(verb, resource, code=exc.status or 0)
            raise _translate(exc, verb, resource, namespace, name) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            metrics().kube_call(verb, resource, code=0)
            log.warning(
                "kubernetes %s %s in %s failed: %s", verb, resource, namespace, type(exc).__name__
            )
            # A failed connect means the request never left; after that, a lost answer says
            # nothing about whether the API server applied the write.
            sent = not isinstance(exc, urllib3.exceptions.ConnectTimeoutError)
            if sent and verb in _WRITE_VERBS:
                check = (
                    f"`/rollout status {name} -n {namespace}`"
                    if name
                    else f"`/rollout list -n {namespace}`"
                )
                raise OutcomeUnknown(
                    f"The Kubernetes API server of cluster `{self.name}` did not answer in time "
                    f"(while trying to {verb} {resource}). The change may or may not have been "
                    f"applied: check {check} before trying again."
                ) from None
            raise ClusterUnavailable(
                f"The Kubernetes API server of cluster `{self.name}` did not answer in time "
                f"(while trying to {verb} {resource}). Nothing was changed; try again shortly."
            ) from None


def _retry_after(exc: ApiException) -> float:
    header = (exc.headers or {}).get("Retry-After", "")
    try:
        seconds = float(header)
    except (TypeError, ValueError):
        seconds = 1.0
    return min(max(seconds, 0.1), MAX_RETRY_AFTER)


def _deployment_model(manifest: Json) -> k8s.V1Deployment:
    model = k8s.V1Deployment.from_dict(manifest)
    if model is None:
        raise ValueError("empty Deployment manifest")
    return model


def _status_message(exc: ApiException) -> str:
    """The API server's own Status.message (safe: it describes the object, not the request)."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return ""
    message = body.get("message", "") if isinstance(body, dict) else ""
    return str(message)[:500]


def _translate(
    exc: ApiException, verb: str, resource: str, namespace: str, name: str | None
) -> ClusterError:
    status = exc.status or 0
    target = f"`{name}`" if name else resource
    if status == 0:
        # Not an HTTP answer: the client reports a failed TLS handshake (untrusted or
        # mismatched certificate) as an ApiException without a status. Retrying won't help.
        log.warning("kubernetes %s %s in %s failed: TLS error", verb, resource, namespace)
        return ClusterUnavailable(
            f"The bot could not open a trusted connection to the Kubernetes API server (while "
            f"trying to {verb} {resource}). Nothing was changed; an operator should check the "
            "server address and certificate authority in the bot's kubeconfig."
        )
    if status == 404:
        return NotFound(f"{target} was not found in namespace `{namespace}`.")
    if status == 403:
        return Forbidden(
            f"The bot's Kubernetes identity is not allowed to *{verb}* `{resource}` in "
            f"namespace `{namespace}`. Nothing was changed. Ask a cluster admin to grant it "
            f"(the Helm chart's `rbac.namespaces`).",
            detail=_status_message(exc),
        )
    if status == 401:
        return Forbidden(
            "The bot's Kubernetes credentials were rejected (401). Nothing was changed. "
            "Check the kubeconfig or service-account token the bot runs with."
        )
    if status == 409:
        return Conflict(
            f"{target} in `{namespace}` kept changing while the bot was updating it. "
            "Nothing was changed; look at its status and try again."
        )
    if status in (400, 422):
        detail = _status_message(exc)
        return Invalid(
            "The API server rejected the change"
            + (f": {detail}" if detail else ".")
            + " Nothing was changed."
        )
    return ClusterUnavailable(
        f"The Kubernetes API server answered {status} while the bot tried to {verb} {resource} "
        f"in `{namespace}`. Nothing was changed; try again shortly."
    )
