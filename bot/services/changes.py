"""The verbs that change a workload, each as kubectl would make it.

A verb that changes the object with one patch (set image, scale, pause, resume, restart) runs
through `apply_patch` by its own `PatchRule` (`bot.domain.verbs`); create and undo have
machinery of their own here. The per-kind rules are the verbs' and the kind table's
(`bot.domain.kinds`); the writes go through `Writes`.
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
from bot.domain.verbs.grammar import PatchRule, VerbSpec
from bot.domain.verbs.scale import SPEC as SCALE
from bot.domain.verbs.scale import Scale
from bot.domain.verbs.set_image import SPEC as SET_IMAGE
from bot.domain.verbs.set_image import SetImage
from bot.domain.verbs.undo import plan_any_undo, plan_undo, plan_workload_undo, undo_warnings
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

    def apply_patch(
        self,
        rule: PatchRule,
        command: Any,
        target: Target,
        actor: Actor,
        *,
        expect: str | None = None,
    ) -> Change:
        """Any verb that changes the object with one patch, by its kubectl rule: planned on
        the object as it is now (kubectl's refusals first, then who else owns it), sent pinned
        to that state, and replanned on a conflict."""
        action = command.action
        reason = getattr(command, "reason", None)

        def attempt(obj: Json) -> Change:
            now = self._now()
            plan = refusal_to_error(lambda: rule.plan(command, target.kind, obj, now))
            notices = self._ownership(target, obj, action)
            if plan.patch is None:
                return self._no_change(target, action, obj, plan.summary, details=plan.details)
            cause = None
            if plan.cause is not None:
                cause = change_cause(plan.cause, actor, reason if isinstance(reason, str) else None)
            updated = self._apply(target, obj, plan.patch, cause, field_manager=rule.field_manager)
            return self._changed(
                target,
                action,
                obj,
                updated,
                plan.summary,
                details=plan.details,
                starts_rollout=plan.starts_rollout,
                notices=notices,
                warnings=plan.warnings,
            )

        return self._with_fresh_state(target, attempt, expect, action)

    def set_image(
        self,
        target: Target,
        images: Sequence[tuple[str, str]],
        actor: Actor,
        reason: str | None,
        *,
        expect: str | None = None,
    ) -> Change:
        command = SetImage(name=target.name, kind=target.kind, images=tuple(images), reason=reason)
        return self.apply_patch(_rule(SET_IMAGE), command, target, actor, expect=expect)

    def scale(
        self,
        target: Target,
        replicas: int,
        actor: Actor,
        reason: str | None,
        *,
        expect: str | None = None,
    ) -> Change:
        command = Scale(name=target.name, kind=target.kind, replicas=replicas, reason=reason)
        return self.apply_patch(_rule(SCALE), command, target, actor, expect=expect)

    def undo(
        self,
        target: Target,
        to_revision: int,
        actor: Actor,
        reason: str | None,
        *,
        expect: str | None = None,
    ) -> Change:
        if not kinds.info(target.kind).revisions_in_replica_sets:
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

    def check(self, target: Target, obj: Json, action: str) -> None:
        """The refusal that holds for every change but `create`, before anything is asked
        or sent: `gitops: refuse` on a GitOps-managed object. kubectl's own refusals are the
        verbs' (`bot.services.registry`)."""
        if action != "create":
            self._ownership(target, obj, "")

    def check_create(self, target: Target) -> None:
        """kubectl create's refusal, before anything is asked: the Deployment exists."""
        try:
            self.on(target.context).get_workload(target.kind, target.namespace, target.name)
        except NotFound:
            return
        raise already_exists(target)

    def undo_plan(
        self, target: Target, obj: Json, to_revision: int
    ) -> tuple[int, dict[str, Any], bool, str]:
        """(target revision, its template, skipped, message) of an undo, for any kind; kubectl's
        refusals as Refused (with the revisions there are, for an unknown one)."""
        try:
            revisions = self.revision_objects(target, obj)
            plan = plan_any_undo(target.kind, obj, revisions, to_revision)
            return plan.target_revision, plan.template, plan.skipped, plan.message
        except UndoRefused as exc:
            message = exc.message
            if exc.reason_code == "revision_not_found":
                message += revisions_line(self.revisions(target, obj))
            raise Refused(message) from None

    def binding(self, target: Target, action: str) -> str:
        """What a pending approval of `action` is bound to now (see `binding`)."""
        return binding(self.get(target), action)


def _rule(spec: VerbSpec) -> PatchRule:
    assert spec.patch is not None, f"{spec.verb} is not a one-patch verb"
    return spec.patch
