"""The verbs that change a workload, each as kubectl would make it: create, set image,
scale, undo, pause, resume, restart; and kubectl's refusals checked before anything is asked.

The per-kind rules are the verbs' own (`bot.domain.verbs`); the writes go through `Writes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.domain import kinds
from bot.domain.annotations import CHANGE_CAUSE_ANNOTATION
from bot.domain.errors import (
    Conflict,
    NotFound,
    Refused,
)
from bot.domain.refusals import UndoRefused
from bot.domain.revisions import (
    deployment_history,
    workload_history,
)
from bot.domain.targets import Actor, Change, Target
from bot.domain.verbs.create import deployment_manifest
from bot.domain.verbs.pause import check_pause, pause_patch
from bot.domain.verbs.restart import check_restart, restart_patch
from bot.domain.verbs.resume import check_resume, resume_patch
from bot.domain.verbs.scale import check_scale
from bot.domain.verbs.set_image import SetImagePlan, plan_set_image
from bot.domain.verbs.undo import plan_undo, plan_workload_undo, undo_warnings
from bot.services.ports import Json
from bot.services.workload_access import (
    already_exists,
    container_images,
    current_number,
    refusal_to_error,
    revisions_line,
)
from bot.services.writes import Writes, binding, change_cause


class Changes(Writes):
    """kubectl's changing verbs."""

    def create(
        self, target: Target, image: str, replicas: int, actor: Actor, reason: str | None
    ) -> Change:
        manifest = deployment_manifest(target.name, image, replicas)
        cause = change_cause(f"create deployment --image={image}", actor, reason)
        manifest["metadata"]["annotations"] = {CHANGE_CAUSE_ANNOTATION: cause}
        with self._namespace_context(target.namespace, target.context):
            try:
                created = self.on(target.context).create_deployment(target.namespace, manifest)
            except Conflict:
                raise already_exists(target) from None
        created = self._retire_cause(target, created, cause)
        return Change(
            target=target,
            action="create",
            summary=f"deployment.apps/{target.name} created",
            changed=True,
            starts_rollout=True,
            revision_before=None,
            images_before=(),
            images_after=container_images(created),
            deployment=created,
        )

    def set_image(
        self,
        target: Target,
        images: Sequence[tuple[str, str]],
        actor: Actor,
        reason: str | None,
        *,
        expect: str | None = None,
    ) -> Change:
        description = "set image " + " ".join(f"{c}={i}" for c, i in images)

        def attempt(deployment: Json) -> Change:
            plan = self.set_image_plan(deployment, images)
            notices = self._ownership(target, deployment, "set-image")
            if plan.patch is None:
                # kubectl prints nothing at all for an image that is already set.
                return self._no_change(
                    target,
                    "set-image",
                    deployment,
                    "",
                    details=("image already set: no change, no new revision",),
                )
            updated = self._apply(
                target,
                deployment,
                plan.patch,
                change_cause(description, actor, reason),
                field_manager="kubectl-set",
            )
            return self._changed(
                target,
                "set-image",
                deployment,
                updated,
                "image updated",
                details=tuple(f"{c.container}: {c.old} → {c.new}" for c in plan.changes),
                notices=notices,
                warnings=plan.errors,
            )

        return self._with_fresh_state(target, attempt, expect, "set-image")

    def scale(
        self,
        target: Target,
        replicas: int,
        actor: Actor,
        reason: str | None,
        *,
        expect: str | None = None,
    ) -> Change:
        def attempt(deployment: Json) -> Change:
            refusal_to_error(lambda: check_scale(target.kind, target.name))
            notices = self._ownership(target, deployment, "scale")
            current = deployment.get("spec", {}).get("replicas", 1)
            if current == replicas:
                # kubectl sends a patch the server finds empty and prints its usual line; the
                # bot sends nothing (the cluster ends the same) and says there was nothing to do.
                return self._no_change(
                    target,
                    "scale",
                    deployment,
                    "scaled",
                    details=(f"already at {replicas} replicas: nothing changed",),
                )
            # The effect of `kubectl scale`: replicas only. The change-cause is kubectl's record
            # of template changes (it labels revisions), so scaling leaves it alone; who scaled
            # and why is in the audit trail.
            updated = self._apply(
                target,
                deployment,
                {"spec": {"replicas": replicas}},
                None,
                field_manager="kubectl-scale",
            )
            return self._changed(
                target,
                "scale",
                deployment,
                updated,
                "scaled",
                details=(f"replicas: {current} → {replicas}",),
                # Pods come and go, so the channel gets the same progress message to follow.
                starts_rollout=True,
                notices=notices,
            )

        return self._with_fresh_state(target, attempt, expect, "scale")

    def undo(
        self,
        target: Target,
        to_revision: int,
        actor: Actor,
        reason: str | None,
        *,
        expect: str | None = None,
    ) -> Change:
        if target.kind != "deployment":
            return self._undo_workload(target, to_revision, actor, reason, expect)

        def attempt(deployment: Json) -> Change:
            notices = self._ownership(target, deployment, "undo")
            replica_sets = self.owned_replica_sets(deployment, target.context)
            try:
                plan = plan_undo(deployment, replica_sets, to_revision)
            except UndoRefused as exc:
                message = exc.message
                if exc.reason_code == "revision_not_found":
                    message += revisions_line(deployment_history(deployment, replica_sets))
                raise Refused(message) from None
            if plan.skipped:
                return self._no_change(
                    target, "undo", deployment, plan.message, warnings=plan.warnings
                )
            flag = f" --to-revision={to_revision}" if to_revision else ""
            cause = change_cause(f"undo{flag}", actor, reason)
            plan = plan.with_change_cause(cause)
            # kubectl's two ops, plus the resourceVersion the plan was computed from: the API
            # server then answers 409 if the Deployment changed since, and we plan again.
            patch = [
                *plan.json_patch,
                {
                    "op": "replace",
                    "path": "/metadata/resourceVersion",
                    "value": deployment["metadata"]["resourceVersion"],
                },
            ]
            updated = self._write(
                target.context,
                deployment,
                lambda: self.on(target.context).patch_deployment(
                    target.namespace, target.name, patch, field_manager="kubectl-rollout"
                ),
            )
            updated = self._retire_cause(target, updated, cause)
            return self._changed(
                target,
                "undo",
                deployment,
                updated,
                "rolled back",
                details=(f"to the template of revision {plan.target_revision}",),
                notices=notices,
                warnings=plan.warnings,
            )

        return self._with_fresh_state(target, attempt, expect, "undo")

    def _undo_workload(
        self, target: Target, to_revision: int, actor: Actor, reason: str | None, expect: str | None
    ) -> Change:
        """kubectl's StatefulSetRollbacker / DaemonSetRollbacker: the revision's stored
        template patch, sent as a strategic-merge patch pinned to the resourceVersion it was
        planned from.

        No change-cause: the controller reuses the old ControllerRevision, whose annotations
        are set only when a revision is first made, so a cause written on the object would
        never show on it, and would label the next revision anyone makes instead."""

        def attempt(obj: Json) -> Change:
            notices = self._ownership(target, obj, "undo")
            revisions = self.owned_revisions(target, obj)
            try:
                plan = plan_workload_undo(obj, revisions, to_revision)
            except UndoRefused as exc:
                message = exc.message
                if exc.reason_code == "revision_not_found":
                    message += revisions_line(workload_history(obj, revisions))
                raise Refused(message) from None
            before = current_number(workload_history(obj, revisions))
            warnings = undo_warnings(obj, kinds.info(target.kind).resource)
            if plan.skipped:
                return self._no_change(
                    target, "undo", obj, plan.message, revision=before, warnings=warnings
                )
            updated = self._apply(target, obj, plan.patch, None, field_manager="kubectl-rollout")
            return self._changed(
                target,
                "undo",
                obj,
                updated,
                "rolled back",
                details=(f"to the template of revision {plan.target_revision}",),
                notices=notices,
                revision=before,
                warnings=warnings,
            )

        return self._with_fresh_state(target, attempt, expect, "undo")

    def pause(
        self,
        target: Target,
        actor: Actor,
        reason: str | None = None,
        *,
        expect: str | None = None,
    ) -> Change:
        return self._set_paused(target, paused=True, expect=expect)

    def resume(
        self,
        target: Target,
        actor: Actor,
        reason: str | None = None,
        *,
        expect: str | None = None,
    ) -> Change:
        return self._set_paused(target, paused=False, expect=expect)

    def _set_paused(self, target: Target, *, paused: bool, expect: str | None) -> Change:
        """kubectl's pauser/resumer: refused where kubectl refuses; never a change-cause."""
        action = "pause" if paused else "resume"
        check = check_pause if paused else check_resume
        patch = pause_patch() if paused else resume_patch()

        def attempt(deployment: Json) -> Change:
            refusal_to_error(lambda: check(target.kind, deployment))
            # Pausing or resuming a GitOps-managed object is a change to it like any other.
            notices = self._ownership(target, deployment, action)
            return self._simple_patch(
                target,
                deployment,
                action,
                patch,
                None,
                "paused" if paused else "resumed",
                starts_rollout=not paused,
                notices=notices,
            )

        return self._with_fresh_state(target, attempt, expect, action)

    def restart(
        self, target: Target, actor: Actor, reason: str | None, *, expect: str | None = None
    ) -> Change:
        def attempt(deployment: Json) -> Change:
            now = self._now()
            refusal_to_error(lambda: check_restart(deployment, now))
            notices = self._ownership(target, deployment, "restart")
            return self._simple_patch(
                target,
                deployment,
                "restart",
                restart_patch(now),
                change_cause("restart", actor, reason),
                "restarted",
                notices=notices,
            )

        return self._with_fresh_state(target, attempt, expect, "restart")

    def check(self, target: Target, obj: Json, action: str, to_revision: int = 0) -> None:
        """kubectl's refusals for `action` on this object, before anything is asked or sent
        (an approval request for something kubectl would refuse is never posted): pause and
        resume of a StatefulSet or DaemonSet, scale of a DaemonSet, an undo kubectl could
        not plan, and `gitops: refuse` on a GitOps-managed object."""
        if action == "pause":
            refusal_to_error(lambda: check_pause(target.kind, obj))
        elif action == "resume":
            refusal_to_error(lambda: check_resume(target.kind, obj))
        elif action == "scale":
            refusal_to_error(lambda: check_scale(target.kind, target.name))
        elif action == "undo":
            self.undo_plan(target, obj, to_revision)
        elif action == "restart":
            refusal_to_error(lambda: check_restart(obj))
        if action != "create":
            self._ownership(target, obj, "")

    def check_create(self, target: Target) -> None:
        """kubectl create's refusal, before anything is asked: the Deployment exists."""
        try:
            self.on(target.context).get_workload(target.kind, target.namespace, target.name)
        except NotFound:
            return
        raise already_exists(target)

    def set_image_plan(self, obj: Json, images: Sequence[tuple[str, str]]) -> SetImagePlan:
        """kubectl set image's plan; Refused where kubectl changes nothing and fails: pairs it
        rejects, or only containers it cannot find (its errors, then the containers there are
        on a line of their own)."""
        plan = refusal_to_error(lambda: plan_set_image(obj, images))
        if plan.patch is None and plan.errors:
            spec = obj.get("spec", {}).get("template", {}).get("spec", {})
            names = [
                c.get("name", "")
                for key in ("containers", "initContainers")
                for c in spec.get(key) or []
            ]
            raise Refused("\n".join([*plan.errors, "containers: " + ", ".join(names)]))
        return plan

    def undo_plan(
        self, target: Target, obj: Json, to_revision: int
    ) -> tuple[int, dict[str, Any], bool, str]:
        """(target revision, its template, skipped, message) of an undo, for any kind; kubectl's
        refusals as Refused (with the revisions there are, for an unknown one)."""
        try:
            if target.kind == "deployment":
                plan = plan_undo(obj, self.owned_replica_sets(obj, target.context), to_revision)
                return plan.target_revision, plan.template, plan.skipped, plan.message
            revisions = self.owned_revisions(target, obj)
            wplan = plan_workload_undo(obj, revisions, to_revision)
            return wplan.target_revision, wplan.template, wplan.skipped, wplan.message
        except UndoRefused as exc:
            message = exc.message
            if exc.reason_code == "revision_not_found":
                message += revisions_line(self.revisions(target, obj))
            raise Refused(message) from None

    def binding(self, target: Target, action: str) -> str:
        """What a pending approval of `action` is bound to now (see `binding`)."""
        return binding(self.get(target), action)
