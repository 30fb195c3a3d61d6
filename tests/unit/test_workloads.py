"""StatefulSet and DaemonSet rules (kubectl's polymorphichelpers), and who else owns a workload."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.domain import kinds, ownership
from bot.domain.annotations import CHANGE_CAUSE_ANNOTATION
from bot.domain.refusals import RolloutRefused, UndoRefused
from bot.domain.revisions import workload_history
from bot.domain.status import StatusReason, deleted_status, workload_status
from bot.domain.verbs.pause import check_pause
from bot.domain.verbs.resume import check_resume
from bot.domain.verbs.scale import check_scale
from bot.domain.verbs.undo import plan_workload_undo

pytestmark = pytest.mark.timeout(60)

UID = "0f1e2d3c-0000-4000-8000-000000000042"


def template(image: str, **annotations: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"labels": {"app": "web"}}
    if annotations:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": {"containers": [{"name": "app", "image": image}]}}


def statefulset(
    *,
    replicas: int = 3,
    ready: int = 3,
    updated: int = 3,
    partition: int | None = 0,
    strategy: str = "RollingUpdate",
    generation: int = 2,
    observed: int = 2,
    image: str = "app:2",
    current_revision: str = "web-2",
    update_revision: str = "web-2",
) -> dict[str, Any]:
    update: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate" and partition is not None:
        update["rollingUpdate"] = {"partition": partition}
    return {
        "metadata": {"name": "web", "uid": UID, "generation": generation},
        "spec": {"replicas": replicas, "updateStrategy": update, "template": template(image)},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "availableReplicas": ready,
            "currentReplicas": replicas,
            "currentRevision": current_revision,
            "updateRevision": update_revision,
        },
    }


def daemonset(
    *,
    desired: int = 2,
    updated: int = 2,
    available: int = 2,
    strategy: str = "RollingUpdate",
    generation: int = 2,
    observed: int = 2,
    image: str = "agent:2",
) -> dict[str, Any]:
    return {
        "metadata": {"name": "agent", "uid": UID, "generation": generation},
        "spec": {"updateStrategy": {"type": strategy}, "template": template(image)},
        "status": {
            "observedGeneration": observed,
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": desired,
            "updatedNumberScheduled": updated,
            "numberAvailable": available,
            "numberReady": available,
        },
    }


def revision(
    number: int, image: str, *, owner: str = UID, cause: str | None = None, name: str = ""
) -> dict[str, Any]:
    patch_template = template(image)
    patch_template["$patch"] = "replace"
    annotations = {CHANGE_CAUSE_ANNOTATION: cause} if cause else {}
    return {
        "metadata": {
            "name": name or f"web-{number}",
            "annotations": annotations,
            "creationTimestamp": f"2026-01-0{number}T00:00:00Z",
            "ownerReferences": [{"uid": owner, "controller": True, "kind": "StatefulSet"}],
        },
        "revision": number,
        "data": {"spec": {"template": patch_template}},
    }


# -- kinds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "kind"),
    [
        ("sts", "statefulset"),
        ("statefulset", "statefulset"),
        ("StatefulSets", "statefulset"),
        ("statefulset.apps", "statefulset"),
        ("ds", "daemonset"),
        ("daemonsets.apps", "daemonset"),
        ("deploy", "deployment"),
        ("deployments.apps", "deployment"),
        ("svc", None),
        ("rs", None),
    ],
)
def test_kinds_are_read_as_kubectl_spells_them(spelling: str, kind: str | None) -> None:
    assert kinds.parse_kind(spelling) == kind


def test_kind_names() -> None:
    info = kinds.info("daemonset")
    assert (info.display, info.group_resource, info.ref("x")) == (
        "DaemonSet",
        "daemonsets.apps",
        "daemonset.apps/x",
    )


# -- status -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "done", "message"),
    [
        (statefulset(), True, "partitioned roll out complete: 3 new pods have been updated..."),
        (statefulset(ready=1), False, "Waiting for 2 pods to be ready..."),
        (
            statefulset(partition=1, updated=1),
            False,
            "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...",
        ),
        (
            statefulset(partition=2, updated=1),
            True,
            "partitioned roll out complete: 1 new pods have been updated...",
        ),
        (statefulset(observed=1), False, "Waiting for statefulset spec update to be observed..."),
        (
            statefulset(observed=0, generation=0),
            False,
            "Waiting for statefulset spec update to be observed...",
        ),
        (
            statefulset(partition=None, update_revision="web-3", updated=1),
            False,
            "waiting for statefulset rolling update to complete 1 pods at revision web-3...",
        ),
        (
            statefulset(partition=None),
            True,
            "statefulset rolling update complete 3 pods at revision web-2...",
        ),
    ],
)
def test_statefulset_status_is_kubectls(obj: dict[str, Any], done: bool, message: str) -> None:
    status = workload_status("statefulset", obj)
    assert (status.done, status.failed, status.message) == (done, False, message)


@pytest.mark.parametrize(
    ("obj", "done", "message"),
    [
        (daemonset(), True, 'daemon set "agent" successfully rolled out'),
        (
            daemonset(updated=1),
            False,
            'Waiting for daemon set "agent" rollout to finish: 1 out of 2 new pods have been '
            "updated...",
        ),
        (
            daemonset(available=1),
            False,
            'Waiting for daemon set "agent" rollout to finish: 1 of 2 updated pods are '
            "available...",
        ),
        (daemonset(observed=1), False, "Waiting for daemon set spec update to be observed..."),
    ],
)
def test_daemonset_status_is_kubectls(obj: dict[str, Any], done: bool, message: str) -> None:
    status = workload_status("daemonset", obj)
    assert (status.done, status.failed, status.message) == (done, False, message)


@pytest.mark.parametrize(
    ("kind", "obj"),
    [
        ("statefulset", statefulset(strategy="OnDelete")),
        ("daemonset", daemonset(strategy="OnDelete")),
    ],
)
def test_status_needs_rolling_update(kind: str, obj: dict[str, Any]) -> None:
    status = workload_status(kind, obj)
    assert status.failed and status.reason == StatusReason.STRATEGY_UNSUPPORTED
    assert status.message == "rollout status is only available for RollingUpdate strategy type"


def test_a_deleted_object_has_kubectls_verdict() -> None:
    status = deleted_status(statefulset(), "statefulset")
    assert status.failed and not status.done and status.message == "object has been deleted"
    assert status.reason == StatusReason.DELETED


# -- history ----------------------------------------------------------------------------------


def test_history_counts_only_revisions_this_object_controls() -> None:
    revisions = [
        revision(1, "app:1", cause="first"),
        revision(2, "app:2"),
        revision(9, "app:9", owner="someone-else"),
    ]
    found = workload_history(statefulset(), revisions)
    assert [r.number for r in found] == [1, 2]
    assert [r.change_cause for r in found] == ["first", None]
    assert [r.is_current for r in found] == [False, True]
    assert found[0].images == (("app", "app:1"),)
    # The described template is the stored one, without the `$patch` directive and without
    # a change-cause copied in (kubectl does that for Deployments only).
    assert "$patch" not in found[0].template
    assert found[0].template["metadata"] == {"labels": {"app": "web"}}


def test_no_revisions_means_no_history() -> None:
    assert workload_history(statefulset(), []) == []


# -- undo -------------------------------------------------------------------------------------


def test_undo_to_a_revision_sends_its_stored_patch() -> None:
    revisions = [revision(1, "app:1"), revision(2, "app:2")]
    plan = plan_workload_undo(statefulset(), revisions, 1)
    assert not plan.skipped and plan.message == "rolled back"
    assert plan.patch == revisions[0]["data"] and plan.target_revision == 1
    assert plan.patch is not revisions[0]["data"]  # a copy: inputs are never mutated


def test_undo_without_a_revision_takes_the_second_highest_number() -> None:
    revisions = [revision(3, "app:1"), revision(1, "app:0"), revision(2, "app:2")]
    plan = plan_workload_undo(statefulset(image="app:1"), revisions)
    assert plan.target_revision == 2


def test_undo_to_the_current_template_is_skipped_as_kubectl_says() -> None:
    revisions = [revision(1, "app:1"), revision(2, "app:2")]
    plan = plan_workload_undo(statefulset(), revisions, 2)
    assert plan.skipped
    assert plan.message == "skipped rollback (current template already matches revision 2)"


@pytest.mark.parametrize(
    ("revisions", "to", "message"),
    [
        ([revision(1, "app:2")], 0, "no last revision to roll back to"),
        ([], 0, "no last revision to roll back to"),
        ([revision(1, "app:1"), revision(2, "app:2")], 5, "unable to find specified revision 5"),
        ([revision(1, "app:1"), revision(2, "app:2")], -1, "unable to find specified revision -1"),
    ],
)
def test_undo_refusals_are_kubectls(revisions: list[dict[str, Any]], to: int, message: str) -> None:
    with pytest.raises(UndoRefused) as caught:
        plan_workload_undo(statefulset(), revisions, to)
    assert caught.value.message.startswith(message)


def test_revisions_are_not_mutated() -> None:
    revisions = [revision(1, "app:1"), revision(2, "app:2")]
    before = copy.deepcopy(revisions)
    workload_history(statefulset(), revisions)
    plan_workload_undo(statefulset(), revisions, 1)
    assert revisions == before


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "obj", "message"),
    [
        ("statefulset", statefulset(), 'statefulsets.apps "web" pausing is not supported'),
        ("daemonset", daemonset(), 'daemonsets.apps "agent" pausing is not supported'),
    ],
)
def test_only_deployments_pause(kind: str, obj: dict[str, Any], message: str) -> None:
    with pytest.raises(RolloutRefused) as caught:
        check_pause(kind, obj)
    assert caught.value.message == message
    with pytest.raises(RolloutRefused) as caught:
        check_resume(kind, obj)
    assert caught.value.message == message.replace("pausing", "resuming")


def test_a_daemonset_cannot_be_scaled() -> None:
    check_scale("statefulset", "web")
    check_scale("deployment", "web")
    with pytest.raises(RolloutRefused, match=r"^Error from server \(NotFound\): the server"):
        check_scale("daemonset", "agent")


# -- ownership --------------------------------------------------------------------------------


def meta(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> Any:
    return {"metadata": {"labels": labels or {}, "annotations": annotations or {}}}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            meta(
                {"app.kubernetes.io/instance": "shop"},
                {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:prod/web"},
            ),
            ("Argo CD", "Application", "shop"),
        ),
        (meta({"argocd.argoproj.io/instance": "shop"}), ("Argo CD", "Application", "shop")),
        (
            meta(
                {
                    "kustomize.toolkit.fluxcd.io/name": "apps",
                    "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
                }
            ),
            ("Flux", "Kustomization", "flux-system/apps"),
        ),
        (
            meta({"helm.toolkit.fluxcd.io/name": "web", "helm.toolkit.fluxcd.io/namespace": "x"}),
            ("Flux", "HelmRelease", "x/web"),
        ),
        # app.kubernetes.io/instance alone is just Helm's (or anyone's) label.
        (meta({"app.kubernetes.io/instance": "shop"}), None),
        (meta({"kustomize.toolkit.fluxcd.io/name": "apps"}), None),
        (meta(), None),
    ],
)
def test_gitops_owner(obj: Any, expected: tuple[str, str, str] | None) -> None:
    owner = ownership.gitops_owner(obj)
    assert (None if owner is None else (owner.tool, owner.kind, owner.name)) == expected


def hpa(kind: str, name: str, lo: int | None = 2, hi: int = 10) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": name},
        "maxReplicas": hi,
    }
    if lo is not None:
        spec["minReplicas"] = lo
    return {"metadata": {"name": f"{name}-hpa"}, "spec": spec}


def test_autoscaler_matches_kind_and_name() -> None:
    hpas = [hpa("Deployment", "web"), hpa("StatefulSet", "db", None, 5)]
    assert ownership.autoscaler_for("deployment", "web", hpas) == ownership.Autoscaler(
        "web-hpa", 2, 10
    )
    assert ownership.autoscaler_for("statefulset", "db", hpas) == ownership.Autoscaler(
        "db-hpa", 1, 5
    )
    assert ownership.autoscaler_for("statefulset", "web", hpas) is None
    assert ownership.autoscaler_for("deployment", "api", hpas) is None


def test_the_kind_table_names_each_kind_as_the_grammar_and_a_user_write_it() -> None:
    assert [kinds.info(k).word("web") for k in kinds.KINDS] == [
        "web",
        "statefulset/web",
        "daemonset/web",
    ]
    assert [kinds.info(k).typed("web") for k in kinds.KINDS] == ["web", "sts/web", "ds/web"]
    assert [kinds.info(k).required_in_listing for k in kinds.KINDS] == [True, False, False]


def test_the_current_revision_is_the_annotation_of_a_deployment_and_read_from_history_else() -> (
    None
):
    deployment = {"metadata": {"annotations": {"deployment.kubernetes.io/revision": "4"}}}

    def unread() -> list[Any]:
        raise AssertionError("a Deployment's revision is on the object")

    assert kinds.info("deployment").current_revision(deployment, unread) == 4
    sts = statefulset()
    history = kinds.info("statefulset").history(sts, [revision(1, "app:1"), revision(2, "app:2")])
    assert kinds.info("statefulset").current_revision(sts, lambda: history) == 2
    assert kinds.info("statefulset").current_revision(sts, list) is None
