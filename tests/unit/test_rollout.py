"""kubectl's rollout rules over plain API dicts."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.annotations import (
    CHANGE_CAUSE_ANNOTATION,
    RESTARTED_AT_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    with_change_cause,
)
from bot.domain.describe import describe_template
from bot.domain.pods import pod_summary, replica_set_summary
from bot.domain.refusals import RolloutRefused, UndoRefused
from bot.domain.revisions import (
    current_replica_set,
    owned_replica_sets,
    paused_template_pending,
    revision_of,
)
from bot.domain.revisions import deployment_history as history
from bot.domain.status import StatusReason, rollout_status
from bot.domain.templates import template_diff, templates_equal_ignoring_hash
from bot.domain.verbs.create import container_name_for_image, deployment_manifest
from bot.domain.verbs.pause import check_pause, pause_patch
from bot.domain.verbs.restart import check_restart, restart_patch
from bot.domain.verbs.resume import check_resume, resume_patch
from bot.domain.verbs.set_image import ImageChange, plan_set_image
from bot.domain.verbs.undo import plan_undo

pytestmark = pytest.mark.timeout(60)

DEPLOYMENT_UID = "9b2f3c1e-0000-4000-8000-000000000001"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# --------------------------------------------------------------------------------------------
# Builders: dicts shaped like the API's JSON, with the defaults the server fills in.


def container(name: str, image: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        **extra,
    }


def pod_template(
    *images: tuple[str, str],
    init: tuple[tuple[str, str], ...] = (),
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    pod_hash: str | None = None,
) -> dict[str, Any]:
    meta_labels = dict(labels) if labels is not None else {"app": "web"}
    if pod_hash is not None:
        meta_labels["pod-template-hash"] = pod_hash
    metadata: dict[str, Any] = {"creationTimestamp": None, "labels": meta_labels}
    if annotations:
        metadata["annotations"] = dict(annotations)
    spec: dict[str, Any] = {
        "containers": [container(n, i) for n, i in (images or (("web", "nginx:1.27"),))],
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "terminationGracePeriodSeconds": 30,
    }
    if init:
        spec["initContainers"] = [container(n, i) for n, i in init]
    return {"metadata": metadata, "spec": spec}


def deployment(
    name: str = "web",
    *,
    template: dict[str, Any] | None = None,
    replicas: int | None = 3,
    generation: int = 2,
    observed: int | None = 2,
    status: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    paused: bool = False,
    revision: str | None = "2",
) -> dict[str, Any]:
    notes = dict(annotations or {})
    if revision is not None:
        notes[REVISION_ANNOTATION] = revision
    spec: dict[str, Any] = {
        "progressDeadlineSeconds": 600,
        "revisionHistoryLimit": 10,
        "selector": {"matchLabels": {"app": name}},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
        },
        "template": template if template is not None else pod_template(),
    }
    if replicas is not None:
        spec["replicas"] = replicas
    if paused:
        spec["paused"] = True
    full_status = dict(status or {})
    if observed is not None:
        full_status["observedGeneration"] = observed
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": DEPLOYMENT_UID,
            "generation": generation,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": notes,
        },
        "spec": spec,
        "status": full_status,
    }


def replica_set(
    template: dict[str, Any],
    revision: str | None,
    *,
    pod_hash: str,
    created: str,
    owner_uid: str = DEPLOYMENT_UID,
    controller: bool = True,
    annotations: dict[str, str] | None = None,
    replicas: int = 0,
    ready: int = 0,
    deployment_name: str = "web",
) -> dict[str, Any]:
    rs_template = copy.deepcopy(template)
    rs_template["metadata"]["labels"]["pod-template-hash"] = pod_hash
    notes = {
        "deployment.kubernetes.io/desired-replicas": "3",
        "deployment.kubernetes.io/max-replicas": "4",
        **(annotations or {}),
    }
    if revision is not None:
        notes[REVISION_ANNOTATION] = revision
    status: dict[str, Any] = {"observedGeneration": 1}
    if replicas:
        status["replicas"] = replicas
    if ready:
        status["readyReplicas"] = ready
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{deployment_name}-{pod_hash}",
            "namespace": "default",
            "uid": f"rs-{pod_hash}",
            "creationTimestamp": created,
            "annotations": notes,
            "labels": {"app": deployment_name, "pod-template-hash": pod_hash},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": deployment_name,
                    "uid": owner_uid,
                    "controller": controller,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": deployment_name, "pod-template-hash": pod_hash}},
            "template": rs_template,
        },
        "status": status,
    }


V1 = pod_template(("web", "nginx:1.25"))
V2 = pod_template(("web", "nginx:1.26"))
V3 = pod_template(("web", "nginx:1.27"))


def three_revisions() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Revisions 1, 2, 3 (current), listed out of order as a LIST may return them."""
    rs1 = replica_set(
        V1, "1", pod_hash="aaa111", created="2026-01-01T00:00:00Z",
        annotations={CHANGE_CAUSE_ANNOTATION: "first"},
    )  # fmt: skip
    rs2 = replica_set(
        V2, "2", pod_hash="bbb222", created="2026-01-02T00:00:00Z",
        annotations={CHANGE_CAUSE_ANNOTATION: "bump to 1.26", "team": "payments"},
    )  # fmt: skip
    rs3 = replica_set(
        V3, "3", pod_hash="ccc333", created="2026-01-03T00:00:00Z", replicas=3, ready=3,
        annotations={CHANGE_CAUSE_ANNOTATION: "bump to 1.27"},
    )  # fmt: skip
    dep = deployment(
        template=copy.deepcopy(V3),
        revision="3",
        annotations={
            CHANGE_CAUSE_ANNOTATION: "bump to 1.27",
            "owner": "only-on-deployment",
            LAST_APPLIED: '{"kind":"Deployment"}',
        },
    )
    return dep, [rs3, rs1, rs2]


# --------------------------------------------------------------------------------------------
# 1. rollout status


def test_status_waits_for_spec_to_be_observed_before_anything_else() -> None:
    dep = deployment(
        generation=3,
        observed=2,
        status={
            "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
            "replicas": 3,
            "updatedReplicas": 3,
            "availableReplicas": 3,
        },
    )
    status = rollout_status(dep)
    assert status.message == "Waiting for deployment spec update to be observed..."
    assert (status.done, status.failed) == (False, False)
    assert status.reason is StatusReason.SPEC_NOT_OBSERVED


def test_status_missing_observed_generation_counts_as_zero() -> None:
    status = rollout_status(deployment(generation=1, observed=None))
    assert status.reason is StatusReason.SPEC_NOT_OBSERVED


def test_status_deadline_exceeded_fails_before_counting_replicas() -> None:
    dep = deployment(
        status={
            "replicas": 4,
            "updatedReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"},
            ],
        }
    )
    status = rollout_status(dep)
    assert status.message == 'deployment "web" exceeded its progress deadline'
    assert status.failed and not status.done
    assert status.reason is StatusReason.DEADLINE_EXCEEDED


def test_status_progressing_with_other_reason_is_not_a_failure() -> None:
    dep = deployment(
        status={
            "replicas": 3,
            "updatedReplicas": 3,
            "availableReplicas": 3,
            "conditions": [{"type": "Progressing", "reason": "NewReplicaSetAvailable"}],
        }
    )
    assert rollout_status(dep).done


def test_status_counts_updated_replicas_first() -> None:
    status = rollout_status(deployment(status={"replicas": 4, "updatedReplicas": 1}))
    assert status.message == (
        'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been '
        "updated..."
    )
    assert status.reason is StatusReason.UPDATING and not status.done


def test_status_absent_updated_replicas_counts_as_zero() -> None:
    status = rollout_status(deployment(status={"replicas": 3}))
    assert "0 out of 3 new replicas" in status.message


def test_status_then_old_replicas_pending_termination() -> None:
    status = rollout_status(deployment(status={"replicas": 5, "updatedReplicas": 3}))
    assert status.message == (
        'Waiting for deployment "web" rollout to finish: 2 old replicas are pending termination...'
    )
    assert status.reason is StatusReason.OLD_REPLICAS_TERMINATING


def test_status_then_updated_replicas_available() -> None:
    dep = deployment(status={"replicas": 3, "updatedReplicas": 3, "availableReplicas": 1})
    status = rollout_status(dep)
    assert status.message == (
        'Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas are available...'
    )
    assert status.reason is StatusReason.UPDATED_NOT_AVAILABLE


def test_status_success() -> None:
    dep = deployment(
        status={"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "readyReplicas": 3}
    )
    status = rollout_status(dep)
    assert status.message == 'deployment "web" successfully rolled out'
    assert status.done and not status.failed
    assert status.reason is StatusReason.COMPLETE


def test_status_zero_replicas_succeeds_immediately() -> None:
    status = rollout_status(deployment(replicas=0, status={}))
    assert status.done
    assert status.message == 'deployment "web" successfully rolled out'


def test_status_without_spec_replicas_skips_the_updated_rule() -> None:
    dep = deployment(replicas=None, status={"replicas": 2, "updatedReplicas": 1})
    status = rollout_status(dep)
    assert status.reason is StatusReason.OLD_REPLICAS_TERMINATING
    assert status.desired is None


def test_status_exposes_counts_for_progress_bars() -> None:
    dep = deployment(
        status={
            "replicas": 4,
            "updatedReplicas": 2,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "unavailableReplicas": 1,
            "terminatingReplicas": 1,
        }
    )
    s = rollout_status(dep)
    assert (s.desired, s.updated, s.ready, s.available, s.total) == (3, 2, 3, 3, 4)
    assert (s.unavailable, s.terminating, s.revision) == (1, 1, 2)
    assert rollout_status(deployment(status={})).terminating is None


def test_status_revision_pin_mismatch_is_an_error_checked_first() -> None:
    dep = deployment(generation=5, observed=4, revision="3")
    status = rollout_status(dep, revision=2)
    assert status.failed and not status.done
    assert status.message == "desired revision (2) is different from the running revision (3)"
    assert status.reason is StatusReason.REVISION_MISMATCH


def test_status_revision_pin_missing_annotation_counts_as_zero() -> None:
    status = rollout_status(deployment(revision=None), revision=1)
    assert status.message == "desired revision (1) is different from the running revision (0)"


def test_status_revision_pin_unparsable_annotation() -> None:
    status = rollout_status(deployment(revision="two"), revision=2)
    assert status.failed
    assert status.message == (
        'cannot get the revision of deployment "web": strconv.ParseInt: parsing "two": '
        "invalid syntax"
    )
    assert status.reason is StatusReason.REVISION_UNREADABLE


@pytest.mark.parametrize("pin", [None, 0, -1])
def test_status_revision_pin_only_applies_above_zero(pin: int | None) -> None:
    status = rollout_status(deployment(revision="junk", status={}, replicas=0), revision=pin)
    assert status.done and status.revision is None


def test_status_matching_revision_pin_falls_through_to_the_rules() -> None:
    dep = deployment(revision="2", status={"replicas": 3, "updatedReplicas": 3})
    assert rollout_status(dep, revision=2).reason is StatusReason.UPDATED_NOT_AVAILABLE


def test_paused_deployment_with_changed_template_is_flagged() -> None:
    dep, rses = three_revisions()
    dep["spec"]["paused"] = True
    dep["spec"]["template"] = pod_template(("web", "nginx:1.28"))
    dep["status"].update({"replicas": 3, "availableReplicas": 3})
    status = rollout_status(dep)
    assert status.paused and status.waiting_while_paused
    assert status.reason is StatusReason.UPDATING
    assert paused_template_pending(dep, rses)


def test_paused_deployment_on_its_current_template_is_not_pending() -> None:
    dep, rses = three_revisions()
    dep["spec"]["paused"] = True
    assert not paused_template_pending(dep, rses)
    dep["spec"]["paused"] = False
    dep["spec"]["template"] = pod_template(("web", "nginx:1.28"))
    assert not paused_template_pending(dep, rses)


# --------------------------------------------------------------------------------------------
# 2. Revisions


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (None, 0),
        ("3", 3),
        ("007", 7),
        ("+4", 4),
        ("-1", -1),
        ("9223372036854775807", 2**63 - 1),
        ("9223372036854775808", None),
        ("", None),
        ("abc", None),
        (" 3", None),
        ("3\n", None),
        ("1_0", None),
        ("0x10", None),
        ("٣", None),
    ],
)
def test_revision_of_parses_like_go(annotation: str | None, expected: int | None) -> None:
    obj: dict[str, Any] = {"metadata": {"annotations": {}}}
    if annotation is not None:
        obj["metadata"]["annotations"][REVISION_ANNOTATION] = annotation
    assert revision_of(obj) == expected


def test_revision_of_without_annotations_at_all() -> None:
    assert revision_of({"metadata": {"name": "x"}}) == 0


def test_owned_replica_sets_need_a_controller_reference_to_this_uid() -> None:
    dep = deployment()
    mine = replica_set(V1, "1", pod_hash="a", created="2026-01-01T00:00:00Z")
    other = replica_set(V1, "1", pod_hash="b", created="2026-01-01T00:00:00Z", owner_uid="x")
    not_controller = replica_set(
        V1, "1", pod_hash="c", created="2026-01-01T00:00:00Z", controller=False
    )
    orphan = replica_set(V1, "1", pod_hash="d", created="2026-01-01T00:00:00Z")
    del orphan["metadata"]["ownerReferences"]
    assert owned_replica_sets(dep, [other, mine, not_controller, orphan]) == [mine]


def test_templates_equal_ignoring_only_the_hash_label() -> None:
    with_hash = pod_template(("web", "nginx:1.27"), pod_hash="abc")
    assert templates_equal_ignoring_hash(with_hash, pod_template(("web", "nginx:1.27")))
    assert not templates_equal_ignoring_hash(with_hash, pod_template(("web", "nginx:1.28")))
    other_label = pod_template(("web", "nginx:1.27"), labels={"app": "web", "tier": "a"})
    assert not templates_equal_ignoring_hash(with_hash, other_label)


def test_templates_equal_treats_empty_and_absent_maps_alike() -> None:
    a = pod_template(labels={})
    b = copy.deepcopy(a)
    del b["metadata"]["labels"]
    del b["metadata"]["creationTimestamp"]
    b["metadata"]["annotations"] = {}
    b["spec"]["containers"][0]["resources"] = {"limits": {}}
    assert templates_equal_ignoring_hash(a, b)
    b["spec"]["terminationGracePeriodSeconds"] = 0
    assert not templates_equal_ignoring_hash(a, b)


def test_current_replica_set_is_the_oldest_matching_one() -> None:
    dep, rses = three_revisions()
    assert current_replica_set(dep, rses) is rses[0]
    # After a Kubernetes upgrade the hash can change: a second RS with the same template.
    newer = replica_set(V3, "4", pod_hash="zzz999", created="2026-01-04T00:00:00Z")
    same_time_earlier_name = replica_set(V3, "5", pod_hash="aaa000", created="2026-01-03T00:00:00Z")
    owned = [newer, *rses, same_time_earlier_name]
    assert current_replica_set(dep, owned) is same_time_earlier_name
    dep["spec"]["template"] = pod_template(("web", "nginx:9"))
    assert current_replica_set(dep, owned) is None


def test_history_is_ascending_with_current_flag_and_change_causes() -> None:
    dep, rses = three_revisions()
    revisions = history(dep, rses)
    assert [r.number for r in revisions] == [1, 2, 3]
    assert [r.is_current for r in revisions] == [False, False, True]
    assert [r.change_cause for r in revisions] == ["first", "bump to 1.26", "bump to 1.27"]
    current = revisions[-1]
    assert current.images == (("web", "nginx:1.27"),)
    assert current.replica_set_name == "web-ccc333"
    assert current.created == "2026-01-03T00:00:00Z"
    assert (current.desired, current.ready) == (3, 3)
    assert current.template["metadata"]["annotations"][CHANGE_CAUSE_ANNOTATION] == "bump to 1.27"
    assert "annotations" not in rses[0]["spec"]["template"]["metadata"]


def test_history_skips_unowned_and_unparsable_and_reads_revision_history() -> None:
    dep, rses = three_revisions()
    rses[1]["metadata"]["annotations"][REVISION_HISTORY_ANNOTATION] = "1,x,4"
    rses[1]["metadata"]["annotations"][REVISION_ANNOTATION] = "5"
    rses[1]["metadata"]["annotations"][CHANGE_CAUSE_ANNOTATION] = ""
    broken = replica_set(V1, "five", pod_hash="eee", created="2026-01-05T00:00:00Z")
    foreign = replica_set(V1, "9", pod_hash="fff", created="2026-01-05T00:00:00Z", owner_uid="o")
    revisions = history(dep, [*rses, broken, foreign])
    assert [r.number for r in revisions] == [2, 3, 5]
    reused = revisions[-1]
    assert reused.revision_history == (1, 4)
    assert reused.change_cause is None
    assert reused.images == (("web", "nginx:1.25"),)


def test_history_lists_init_container_images_after_containers() -> None:
    template = pod_template(("web", "nginx:1"), init=(("migrate", "tool:2"),))
    rs = replica_set(template, "1", pod_hash="a", created="2026-01-01T00:00:00Z")
    (rev,) = history(deployment(template=template), [rs])
    assert rev.images == (("web", "nginx:1"), ("migrate", "tool:2"))


def test_history_duplicate_revision_keeps_the_current_replica_set() -> None:
    dep, rses = three_revisions()
    rses[2]["metadata"]["annotations"][REVISION_ANNOTATION] = "3"
    revisions = history(dep, rses)
    assert [r.number for r in revisions] == [1, 3]
    assert revisions[-1].replica_set_name == "web-ccc333"


def test_history_of_nothing_is_empty() -> None:
    assert history(deployment(), []) == []


# --------------------------------------------------------------------------------------------
# 3. Undo


def test_undo_to_previous_picks_second_highest_revision() -> None:
    dep, rses = three_revisions()
    plan = plan_undo(dep, rses)
    assert (plan.skipped, plan.target_revision, plan.target_replica_set) == (False, 2, "web-bbb222")
    assert plan.message == "rolled back"
    assert plan.template["spec"]["containers"][0]["image"] == "nginx:1.26"


def test_undo_to_a_given_revision() -> None:
    dep, rses = three_revisions()
    plan = plan_undo(dep, rses, to_revision=1)
    assert plan.target_revision == 1
    assert plan.template["spec"]["containers"][0]["image"] == "nginx:1.25"


def test_undo_skipped_message_uses_the_requested_number() -> None:
    dep, rses = three_revisions()
    plan = plan_undo(dep, rses, to_revision=3)
    assert plan.skipped
    assert plan.message == "skipped rollback (current template already matches revision 3)"
    # Previous revision with the same template (a hash change after an upgrade): "revision 0".
    twin = replica_set(V3, "2", pod_hash="ddd444", created="2026-01-02T00:00:00Z")
    plan = plan_undo(dep, [rses[0], rses[1], twin])
    assert plan.skipped and plan.target_revision == 2
    assert plan.message == "skipped rollback (current template already matches revision 0)"


def test_undo_refuses_negative_revision() -> None:
    dep, rses = three_revisions()
    with pytest.raises(UndoRefused) as err:
        plan_undo(dep, rses, to_revision=-1)
    assert err.value.reason_code == "negative_revision"
    assert err.value.message == "unable to find specified revision -1 in history"


def test_undo_refuses_unknown_revision() -> None:
    dep, rses = three_revisions()
    with pytest.raises(UndoRefused) as err:
        plan_undo(dep, rses, to_revision=7)
    assert err.value.reason_code == "revision_not_found"
    assert str(err.value) == "unable to find specified revision 7 in history"


def test_undo_with_only_one_replica_set_has_no_history() -> None:
    dep, rses = three_revisions()
    with pytest.raises(UndoRefused) as err:
        plan_undo(dep, [rses[0]])
    assert err.value.reason_code == "no_history"
    assert err.value.message == 'no rollout history found for deployment "web"'


def test_undo_ignores_unowned_and_unparsable_replica_sets() -> None:
    dep, rses = three_revisions()
    foreign = replica_set(V1, "9", pod_hash="f", created="2026-01-01T00:00:00Z", owner_uid="o")
    broken = replica_set(V1, "x", pod_hash="g", created="2026-01-01T00:00:00Z")
    with pytest.raises(UndoRefused, match="no rollout history"):
        plan_undo(dep, [rses[0], foreign, broken])


def test_undo_refuses_paused_deployment_after_finding_the_target() -> None:
    dep, rses = three_revisions()
    dep["spec"]["paused"] = True
    with pytest.raises(UndoRefused) as err:
        plan_undo(dep, rses)
    assert err.value.reason_code == "paused"
    assert err.value.message == (
        "you cannot rollback a paused deployment; resume it first with "
        "'kubectl rollout resume' and try again"
    )
    with pytest.raises(UndoRefused) as missing:
        plan_undo(dep, rses, to_revision=9)
    assert missing.value.reason_code == "revision_not_found"


def test_undo_annotations_keep_skip_keys_and_take_the_replica_sets_own() -> None:
    dep, rses = three_revisions()
    plan = plan_undo(dep, rses)
    assert plan.annotations == {
        LAST_APPLIED: '{"kind":"Deployment"}',
        REVISION_ANNOTATION: "3",
        CHANGE_CAUSE_ANNOTATION: "bump to 1.26",
        "team": "payments",
    }
    assert "owner" not in plan.annotations


def test_undo_template_drops_hash_but_keeps_restarted_at() -> None:
    dep, rses = three_revisions()
    restarted = pod_template(("web", "nginx:1.26"), annotations={RESTARTED_AT_ANNOTATION: "t"})
    rses[2]["spec"]["template"] = copy.deepcopy(restarted)
    rses[2]["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = "bbb222"
    before = copy.deepcopy(rses)
    plan = plan_undo(dep, rses)
    assert plan.template == restarted
    assert plan.template["metadata"]["annotations"] == {RESTARTED_AT_ANNOTATION: "t"}
    assert rses == before


def test_undo_json_patch_is_exactly_two_replace_ops() -> None:
    dep, rses = three_revisions()
    plan = plan_undo(dep, rses)
    assert plan.json_patch == [
        {"op": "replace", "path": "/spec/template", "value": plan.template},
        {"op": "replace", "path": "/metadata/annotations", "value": plan.annotations},
    ]


def test_undo_change_cause_can_be_overridden() -> None:
    dep, rses = three_revisions()
    plan = plan_undo(dep, rses)
    ours = plan.with_change_cause("rolled back to 2 by @ana")
    assert ours.annotations[CHANGE_CAUSE_ANNOTATION] == "rolled back to 2 by @ana"
    assert ours.json_patch[1]["value"][CHANGE_CAUSE_ANNOTATION] == "rolled back to 2 by @ana"
    assert plan.annotations[CHANGE_CAUSE_ANNOTATION] == "bump to 1.26"
    assert ours.template == plan.template


def test_undo_warns_when_last_applied_configuration_exists() -> None:
    dep, rses = three_revisions()
    (warning,) = plan_undo(dep, rses).warnings
    assert warning.startswith(
        "Warning: resource deployments/web was previously managed with 'kubectl apply'."
    )
    del dep["metadata"]["annotations"][LAST_APPLIED]
    assert plan_undo(dep, rses).warnings == ()


# --------------------------------------------------------------------------------------------
# 4. set image


def web_with_sidecar() -> dict[str, Any]:
    template = pod_template(
        ("web", "nginx:1.27"), ("proxy", "envoy:1.30"), init=(("migrate", "tool:1"),)
    )
    return deployment(template=template)


def test_set_image_patches_only_the_changed_container() -> None:
    plan = plan_set_image(web_with_sidecar(), [("web", "nginx:1.28")])
    assert plan.changes == (ImageChange("web", "nginx:1.27", "nginx:1.28"),)
    assert plan.patch == {
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}
    }


def test_set_image_updates_init_containers() -> None:
    plan = plan_set_image(web_with_sidecar(), [("migrate", "tool:2")])
    assert plan.changes == (("migrate", "tool:1", "tool:2"),)
    assert plan.patch == {
        "spec": {"template": {"spec": {"initContainers": [{"name": "migrate", "image": "tool:2"}]}}}
    }


def test_set_image_star_updates_every_container() -> None:
    plan = plan_set_image(web_with_sidecar(), [("*", "busybox:1")])
    assert [c.container for c in plan.changes] == ["web", "proxy", "migrate"]
    assert plan.patch == {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "web", "image": "busybox:1"},
                        {"name": "proxy", "image": "busybox:1"},
                    ],
                    "initContainers": [{"name": "migrate", "image": "busybox:1"}],
                }
            }
        }
    }


def test_set_image_a_container_named_twice_keeps_its_last_image() -> None:
    plan = plan_set_image(web_with_sidecar(), [("web", "nginx:1.26"), ("web", "nginx:1.28")])
    assert plan.changes == (ImageChange("web", "nginx:1.27", "nginx:1.28"),)


def test_set_image_star_beside_another_container_is_kubectls_error() -> None:
    with pytest.raises(RolloutRefused, match="all containers are already specified by"):
        plan_set_image(web_with_sidecar(), [("*", "busybox:2"), ("web", "nginx:1.27")])


def test_set_image_changes_the_containers_found_and_errs_for_the_others() -> None:
    plan = plan_set_image(web_with_sidecar(), [("web", "nginx:2"), ("redis", "redis:7")])
    assert plan.changes == (ImageChange("web", "nginx:1.27", "nginx:2"),)
    assert plan.errors == ('error: unable to find container named "redis"',)


def test_set_image_same_image_is_no_change() -> None:
    plan = plan_set_image(web_with_sidecar(), [("web", "nginx:1.27")])
    assert plan.changes == ()
    assert plan.patch is None


def test_set_image_needs_at_least_one_pair() -> None:
    with pytest.raises(RolloutRefused, match="at least one image update is required"):
        plan_set_image(web_with_sidecar(), [])


def test_with_change_cause_merges_into_a_copy() -> None:
    plan = plan_set_image(web_with_sidecar(), [("web", "nginx:1.28")])
    assert plan.patch is not None
    merged = with_change_cause(plan.patch, "set image web=nginx:1.28 by @ana")
    assert merged["metadata"] == {
        "annotations": {CHANGE_CAUSE_ANNOTATION: "set image web=nginx:1.28 by @ana"}
    }
    assert merged["spec"] == plan.patch["spec"]
    assert "metadata" not in plan.patch


# --------------------------------------------------------------------------------------------
# 5. restart, pause, resume


def test_restart_patch_is_rfc3339_to_the_second() -> None:
    utc = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    assert restart_patch(utc) == {
        "spec": {
            "template": {
                "metadata": {"annotations": {RESTARTED_AT_ANNOTATION: "2026-03-04T05:06:07Z"}}
            }
        }
    }
    east = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    west = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=-7)))
    stamp = restart_patch(east)["spec"]["template"]["metadata"]["annotations"]
    assert stamp[RESTARTED_AT_ANNOTATION] == "2026-03-04T05:06:07+05:30"
    stamp = restart_patch(west)["spec"]["template"]["metadata"]["annotations"]
    assert stamp[RESTARTED_AT_ANNOTATION] == "2026-03-04T05:06:07-07:00"


def test_restart_patch_takes_a_naive_time_as_local() -> None:
    stamp = restart_patch(datetime(2026, 3, 4, 5, 6, 7))["spec"]["template"]["metadata"]
    value = stamp["annotations"][RESTARTED_AT_ANNOTATION]
    assert re.fullmatch(r"2026-03-04T05:06:07(Z|[+-]\d\d:\d\d)", value)


def test_restart_refused_while_paused() -> None:
    with pytest.raises(RolloutRefused) as err:
        check_restart(deployment(paused=True))
    assert err.value.message == (
        'deployments.apps "web" can\'t restart paused deployment (run rollout resume first)'
    )
    check_restart(deployment())


def test_restart_refused_twice_in_the_same_second() -> None:
    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    template = pod_template(annotations={RESTARTED_AT_ANNOTATION: "2026-03-04T05:06:07Z"})
    dep = deployment(template=template)
    with pytest.raises(RolloutRefused) as err:
        check_restart(dep, now=now)
    assert err.value.reason_code == "restart_too_soon"
    assert err.value.message.startswith("failed to create patch for web: if restart has already")
    check_restart(dep, now=now + timedelta(seconds=1))


def test_pause_and_resume_patches_and_refusals() -> None:
    assert pause_patch() == {"spec": {"paused": True}}
    assert resume_patch() == {"spec": {"paused": False}}
    check_pause("deployment", deployment())
    check_resume("deployment", deployment(paused=True))
    with pytest.raises(RolloutRefused) as paused:
        check_pause("deployment", deployment(paused=True))
    assert paused.value.message == 'deployments.apps "web" is already paused'
    with pytest.raises(RolloutRefused) as running:
        check_resume("deployment", deployment())
    assert running.value.message == 'deployments.apps "web" is not paused'


# --------------------------------------------------------------------------------------------
# 6. create

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("nginx", "nginx"),
        ("nginx:1.18-alpine", "nginx"),
        ("library/nginx:latest", "nginx"),
        ("registry.example.com:5000/team/my-app@sha256:" + "a" * 64, "my-app"),
        ("registry.example.com:5000/team/my-app:v1@sha256:abc", "my-app"),
        ("ghcr.io/org/My_App.Server:2", "my-app-server"),
        ("localhost:5000", "localhost"),
        ("___", "app"),
    ],
)
def test_container_name_from_image(image: str, name: str) -> None:
    assert container_name_for_image(image) == name


@given(st.text(max_size=120))
def test_container_name_is_always_a_dns_label(image: str) -> None:
    name = container_name_for_image(image)
    assert DNS_LABEL.fullmatch(name)
    assert len(name) <= 63


def test_deployment_manifest_matches_kubectl_create() -> None:
    manifest = deployment_manifest("shop", "ghcr.io/acme/shop:1.2", replicas=2, namespace="prod")
    assert manifest == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop", "namespace": "prod", "labels": {"app": "shop"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "shop"}},
            "strategy": {},
            "template": {
                "metadata": {"labels": {"app": "shop"}},
                "spec": {
                    "containers": [
                        {"name": "shop", "image": "ghcr.io/acme/shop:1.2", "resources": {}}
                    ]
                },
            },
        },
    }
    manifest["metadata"]["labels"]["extra"] = "x"
    assert manifest["spec"]["template"]["metadata"]["labels"] == {"app": "shop"}


def test_deployment_manifest_rejects_negative_replicas() -> None:
    with pytest.raises(ValueError, match="replicas"):
        deployment_manifest("shop", "shop:1", replicas=-1)


# --------------------------------------------------------------------------------------------
# 7. Template diff


def test_diff_ignores_pod_template_hash_and_noise() -> None:
    old = pod_template(("web", "nginx:1.27"), pod_hash="abc")
    new = pod_template(("web", "nginx:1.27"))
    new["metadata"]["annotations"] = {CHANGE_CAUSE_ANNOTATION: "why"}
    diff = template_diff(old, new, "revision 2", "revision 3")
    assert diff.changed is False
    assert (diff.text, diff.lines_omitted) == ("", 0)


def test_diff_shows_the_changed_image_as_yaml() -> None:
    old = pod_template(("web", "nginx:1.27"), pod_hash="abc")
    new = pod_template(("web", "nginx:1.28"), pod_hash="def")
    diff = template_diff(old, new, "revision 2", "revision 3")
    lines = diff.text.splitlines()
    assert diff.changed and diff.lines_omitted == 0
    assert lines[:2] == ["--- revision 2", "+++ revision 3"]
    assert "-  - image: nginx:1.27" in lines
    assert "+  - image: nginx:1.28" in lines
    assert "pod-template-hash" not in diff.text
    assert "creationTimestamp" not in diff.text
    assert "resources" not in diff.text


def test_diff_can_show_the_change_cause() -> None:
    old = pod_template()
    new = pod_template(annotations={CHANGE_CAUSE_ANNOTATION: "why"})
    assert template_diff(old, new, "a", "b", ignore_change_cause=False).changed


def test_diff_is_cut_with_the_omitted_count() -> None:
    old = pod_template(*[(f"c{i}", "img:1") for i in range(30)])
    new = pod_template(*[(f"c{i}", "img:2") for i in range(30)])
    full = template_diff(old, new, "a", "b", max_lines=10_000)
    cut = template_diff(old, new, "a", "b", max_lines=20)
    assert full.lines_omitted == 0
    assert len(cut.text.splitlines()) == 20
    assert cut.lines_omitted == len(full.text.splitlines()) - 20
    assert full.text.startswith(cut.text)


label_text = st.text(alphabet="abcdefghij-./0123", min_size=1, max_size=8)
templates = st.builds(
    lambda labels, notes, images, grace, env: _generated_template(
        labels, notes, images, grace, env
    ),
    st.dictionaries(label_text, label_text, max_size=3),
    st.dictionaries(label_text, st.text(max_size=30), max_size=3),
    st.lists(st.tuples(label_text, label_text), min_size=1, max_size=3),
    st.none() | st.integers(min_value=0, max_value=60),
    st.dictionaries(label_text, st.text(max_size=10), max_size=2),
)


def _generated_template(
    labels: dict[str, str],
    notes: dict[str, str],
    images: list[tuple[str, str]],
    grace: int | None,
    env: dict[str, str],
) -> dict[str, Any]:
    template = pod_template(*images, labels=labels, annotations=notes)
    if grace is None:
        del template["spec"]["terminationGracePeriodSeconds"]
    else:
        template["spec"]["terminationGracePeriodSeconds"] = grace
    template["spec"]["containers"][0]["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return template


@given(templates, st.text(alphabet="abc123", min_size=1, max_size=10))
def test_diff_of_a_template_with_itself_is_unchanged(template: dict[str, Any], h: str) -> None:
    hashed = copy.deepcopy(template)
    hashed["metadata"]["labels"]["pod-template-hash"] = h
    diff = template_diff(template, hashed, "a", "b")
    assert not diff.changed and diff.text == ""
    assert templates_equal_ignoring_hash(template, hashed)


@given(templates, templates)
def test_diff_agrees_with_template_equality(a: dict[str, Any], b: dict[str, Any]) -> None:
    diff = template_diff(a, b, "a", "b", ignore_change_cause=False)
    assert diff.changed is not templates_equal_ignoring_hash(a, b)


# --------------------------------------------------------------------------------------------
# 8. Pods and ReplicaSets

NOW = datetime(2026, 1, 1, 0, 10, 0, tzinfo=UTC)


def pod(
    *statuses: dict[str, Any],
    phase: str = "Running",
    init: tuple[dict[str, Any], ...] = (),
    init_specs: tuple[dict[str, Any], ...] = (),
    conditions: tuple[dict[str, Any], ...] = (),
    deleting: bool = False,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": "web-ccc333-x1y2z",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "labels": {"app": "web", "pod-template-hash": "ccc333"},
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:09:00Z"
    status: dict[str, Any] = {"phase": phase, "containerStatuses": list(statuses)}
    if init:
        status["initContainerStatuses"] = list(init)
    if conditions:
        status["conditions"] = list(conditions)
    spec: dict[str, Any] = {
        "nodeName": "node-1",
        "containers": [container(s["name"], "img") for s in statuses] or [container("c", "i")],
    }
    if init_specs:
        spec["initContainers"] = list(init_specs)
    return {"metadata": metadata, "spec": spec, "status": status}


def running(name: str = "web", restarts: int = 0, ready: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": "2026-01-01T00:00:05Z"}},
    }


def waiting(name: str, reason: str, restarts: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "ready": False,
        "restartCount": restarts,
        "state": {"waiting": {"reason": reason}},
    }


def test_pod_summary_running() -> None:
    summary = pod_summary(pod(running(restarts=2)), NOW)
    assert (summary.name, summary.ready, summary.phase_or_reason) == (
        "web-ccc333-x1y2z",
        "1/1",
        "Running",
    )
    assert (summary.restarts, summary.age_seconds) == (2, 600)
    assert (summary.template_hash, summary.node) == ("ccc333", "node-1")


def test_pod_summary_waiting_reason_wins_over_phase() -> None:
    summary = pod_summary(pod(running("a"), waiting("b", "ImagePullBackOff"), phase="Pending"), NOW)
    assert summary.phase_or_reason == "ImagePullBackOff"
    assert summary.ready == "1/2"


def test_pod_summary_crash_loop_sums_restarts() -> None:
    summary = pod_summary(pod(running("a", 1), waiting("b", "CrashLoopBackOff", 4)), NOW)
    assert (summary.phase_or_reason, summary.restarts) == ("CrashLoopBackOff", 5)


def test_pod_summary_terminated_without_reason_shows_exit_code() -> None:
    dead: dict[str, Any] = {
        "name": "a",
        "restartCount": 0,
        "state": {"terminated": {"exitCode": 137}},
    }
    assert pod_summary(pod(dead), NOW).phase_or_reason == "ExitCode:137"
    dead["state"]["terminated"]["signal"] = 9
    assert pod_summary(pod(dead), NOW).phase_or_reason == "Signal:9"


def test_pod_summary_completed_with_a_running_container() -> None:
    done = {"name": "job", "restartCount": 0, "state": {"terminated": {"reason": "Completed"}}}
    ready = ({"type": "Ready", "status": "True"},)
    assert pod_summary(pod(running("a"), done, conditions=ready), NOW).phase_or_reason == "Running"
    assert pod_summary(pod(running("a"), done), NOW).phase_or_reason == "NotReady"


def test_pod_summary_terminating() -> None:
    summary = pod_summary(pod(running(), deleting=True), NOW)
    assert summary.phase_or_reason == "Terminating"
    finished = pod(running(), deleting=True, phase="Succeeded")
    assert pod_summary(finished, NOW).phase_or_reason == "Succeeded"


def test_pod_summary_init_containers() -> None:
    specs = (container("migrate", "tool:1"), container("seed", "tool:1"))
    pending = {"name": "migrate", "restartCount": 0, "state": {"waiting": {}}}
    summary = pod_summary(pod(init=(pending,), init_specs=specs, phase="Pending"), NOW)
    assert summary.phase_or_reason == "Init:0/2"
    crashing = waiting("migrate", "CrashLoopBackOff", restarts=3)
    summary = pod_summary(pod(init=(crashing,), init_specs=specs, phase="Pending"), NOW)
    assert (summary.phase_or_reason, summary.restarts) == ("Init:CrashLoopBackOff", 3)
    failed = {"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}
    summary = pod_summary(pod(init=(failed,), init_specs=specs), NOW)
    assert summary.phase_or_reason == "Init:ExitCode:2"


def test_pod_summary_counts_started_sidecars() -> None:
    sidecar_spec = container("proxy", "envoy", restartPolicy="Always")
    sidecar = {**running("proxy", restarts=1), "started": True}
    summary = pod_summary(pod(running("web"), init=(sidecar,), init_specs=(sidecar_spec,)), NOW)
    assert (summary.ready, summary.phase_or_reason, summary.restarts) == ("2/2", "Running", 1)


def test_pod_summary_without_creation_time() -> None:
    bare = pod(running())
    del bare["metadata"]["creationTimestamp"]
    assert pod_summary(bare, NOW).age_seconds is None


def test_replica_set_summary() -> None:
    _, rses = three_revisions()
    summary = replica_set_summary(rses[0])
    assert summary.name == "web-ccc333"
    assert (summary.revision, summary.images) == (3, (("web", "nginx:1.27"),))
    assert (summary.desired, summary.ready) == (3, 3)
    assert replica_set_summary(rses[1]).ready == 0


# --------------------------------------------------------------------------------------------
# 9. describe_template


def test_describe_template_like_kubectl() -> None:
    template = pod_template(("nginx", "nginx:1.27"), pod_hash="7b96fbf5d8")
    template["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "protocol": "TCP"}]
    assert describe_template(template) == "\n".join(
        [
            "Pod Template:",
            "  Labels:\tapp=web",
            "\tpod-template-hash=7b96fbf5d8",
            "  Containers:",
            "   nginx:",
            "    Image:\tnginx:1.27",
            "    Port:\t80/TCP",
            "    Host Port:\t0/TCP",
            "    Environment:\t<none>",
            "    Mounts:\t<none>",
            "  Volumes:\t<none>",
            "  Node-Selectors:\t<none>",
            "  Tolerations:\t<none>",
        ]
    )


def test_describe_template_with_annotations_env_mounts_and_volumes() -> None:
    template = pod_template(
        ("web", "shop:2"),
        init=(("migrate", "shop:2"),),
        annotations={CHANGE_CAUSE_ANNOTATION: "deploy 2", RESTARTED_AT_ANNOTATION: "now"},
    )
    web = template["spec"]["containers"][0]
    web["ports"] = [
        {"containerPort": 80, "protocol": "TCP", "name": "http"},
        {"containerPort": 443},
    ]
    web["env"] = [
        {"name": "MODE", "value": "prod"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
    ]
    web["volumeMounts"] = [
        {"name": "config", "mountPath": "/etc/shop", "readOnly": True},
        {"name": "cache", "mountPath": "/cache"},
    ]
    web["readinessProbe"] = {
        "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    web["resources"] = {"limits": {"memory": "256Mi", "cpu": "500m"}}
    template["spec"]["volumes"] = [
        {"name": "cache", "emptyDir": {}},
        {"name": "config", "configMap": {"name": "shop-config", "defaultMode": 420}},
    ]
    template["spec"]["tolerations"] = [
        {"key": "dedicated", "operator": "Equal", "value": "shop", "effect": "NoSchedule"}
    ]
    text = describe_template(template)
    assert "  Annotations:\tkubectl.kubernetes.io/restartedAt: now\n" in text
    assert "\tkubernetes.io/change-cause: deploy 2\n" in text
    assert text.index("  Init Containers:\n   migrate:") < text.index("  Containers:\n   web:")
    # kubectl 1.34 and later name a named port, on both lines.
    assert "    Ports:\t80/TCP (http), 443/TCP\n    Host Ports:\t0/TCP (http), 0/TCP\n" in text
    assert "    Limits:\n      cpu:\t500m\n      memory:\t256Mi\n" in text
    assert (
        "    Readiness:\thttp-get http://:8080/healthz delay=0s timeout=1s period=10s "
        "#success=1 #failure=3\n"
    ) in text
    assert "      MODE:\tprod\n" in text
    assert "      TOKEN:\t<set to the key 'token' in secret 'creds'>\tOptional: false\n" in text
    assert "    Mounts:\n      /cache from cache (rw)\n      /etc/shop from config (ro)\n" in text
    assert (
        "   cache:\n    Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)"
        in text
    )
    assert "    Name:\tshop-config\n    Optional:\tfalse" in text
    assert text.endswith("  Tolerations:\tdedicated=shop:NoSchedule")


def test_describe_template_shows_the_revisions_change_cause() -> None:
    dep, rses = three_revisions()
    current = history(dep, rses)[-1]
    assert "  Annotations:\tkubernetes.io/change-cause: bump to 1.27" in describe_template(
        current.template
    )
