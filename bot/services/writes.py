"""How every change is written: pinned to the state it was planned from, retried on a
conflict, claimed as the bot's generation, with the change-cause recorded and then retired.

What an approval is bound to (`binding`) is here too: a change runs only while the object
is still what the approver saw.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from bot.domain import kinds, ownership
from bot.domain.annotations import CHANGE_CAUSE_ANNOTATION, with_change_cause
from bot.domain.errors import (
    Conflict,
    Forbidden,
    NotFound,
    OutcomeUnknown,
    Refused,
    RolloutBotError,
    failure_name,
)
from bot.domain.revisions import (
    workload_history,
)
from bot.domain.targets import Actor, Change, ChangeAction, Target
from bot.domain.templates import templates_equal_ignoring_hash
from bot.domain.verbs import AUTOSCALED_ACTIONS, BOUND_FIELDS
from bot.services.ports import Json
from bot.services.workload_access import Ownership, WorkloadAccess, container_images

log = logging.getLogger(__name__)

# A conflict means someone changed the Deployment between our read and our write; a few fresh
# attempts cover a busy controller without hiding a genuinely contended object. The controller
# writes in bursts (status after every pod change), so the attempts are spread out a little.
CONFLICT_ATTEMPTS = 5
CONFLICT_BACKOFF = 0.1
# How long a template change waits for its revision (the controller makes it within a second
# or so) before taking its change-cause off the object; see `Rollouts._retire_cause`.
CAUSE_SETTLE_SECONDS = 5.0


def change_cause(description: str, actor: Actor, reason: str | None) -> str:
    """`set image nginx=nginx:1.19 by @alice via Slack: fixes CVE-1` (also shown by kubectl)."""
    text = f"{description} by @{actor.user_name} via Slack"
    return f"{text}: {reason}" if reason else text


class Writes(WorkloadAccess):
    """The write machinery every verb's change goes through."""

    def _simple_patch(
        self,
        target: Target,
        deployment: Json,
        action: ChangeAction,
        patch: Json,
        cause: str | None,
        verb: str,
        *,
        starts_rollout: bool = True,
        notices: tuple[str, ...] = (),
    ) -> Change:
        updated = self._apply(target, deployment, patch, cause, field_manager="kubectl-rollout")
        return self._changed(
            target,
            action,
            deployment,
            updated,
            verb,
            starts_rollout=starts_rollout,
            notices=notices,
        )

    def _apply(
        self,
        target: Target,
        deployment: Json,
        patch: Json,
        cause: str | None,
        *,
        field_manager: str,
    ) -> Json:
        """A strategic-merge patch pinned to the resourceVersion it was computed from: if the
        object changed since, the API server answers 409 and we plan again.

        A template change also records who and why as the change-cause, in the same request,
        so the new revision (ReplicaSet or ControllerRevision) inherits the right cause; any
        other change (`cause` None) leaves the change-cause alone, as kubectl does.
        """
        body: dict[str, Any] = with_change_cause(patch, cause) if cause is not None else dict(patch)
        metadata = dict(body.get("metadata") or {})
        metadata["resourceVersion"] = deployment["metadata"]["resourceVersion"]
        body["metadata"] = metadata
        updated = self._write(
            target.context,
            deployment,
            lambda: self.on(target.context).patch_workload(
                target.kind, target.namespace, target.name, body, field_manager=field_manager
            ),
        )
        if cause is not None:
            updated = self._retire_cause(target, updated, cause)
        return updated

    def _retire_cause(self, target: Target, updated: Json, cause: str) -> Json:
        """Takes the bot's change-cause off the object once the revision its change made
        carries it, so the next revision someone else makes (`kubectl rollout restart`, say)
        does not inherit it: the controllers copy the object's annotations onto a new revision
        (a Deployment's onto its current ReplicaSet on every sync) but never remove one.

        Bookkeeping only: it never fails the change. A paused Deployment makes no revision
        until resumed; the cause then stays, for the revision that will carry the change.

        A Deployment's generation counts annotation changes too, so the removal makes one: it
        is claimed as the bot's like any write, and the object it returns is the one the
        change's progress follows."""
        if updated.get("spec", {}).get("paused") is True:
            return updated
        path = "/metadata/annotations/" + CHANGE_CAUSE_ANNOTATION.replace("/", "~1")
        # Only if it is still the bot's text: a newer cause is someone else's to keep.
        removal = [{"op": "test", "path": path, "value": cause}, {"op": "remove", "path": path}]
        try:
            deadline = time.monotonic() + CAUSE_SETTLE_SECONDS
            # Each look is a LIST: start quick (the controller usually answers within a
            # second), then back off, so a slow controller costs a handful, not fifty.
            pause = 0.1
            while not self._revision_has_cause(target, updated, cause):
                if time.monotonic() > deadline:
                    log.info("no revision of %s carries the change-cause yet; kept", target)
                    return updated
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
            return self._write(
                target.context,
                updated,
                lambda: self.on(target.context).patch_workload(
                    target.kind, target.namespace, target.name, removal, field_manager="rollout-bot"
                ),
            )
        except Exception as exc:  # bookkeeping: the change itself is done and reported
            log.info("change-cause of %s left on the object: %s", target, type(exc).__name__)
            return updated

    def _revision_has_cause(self, target: Target, updated: Json, cause: str) -> bool:
        """Whether the revision with `updated`'s pod template carries `cause`."""
        template = updated.get("spec", {}).get("template", {})
        if kinds.info(target.kind).revisions_in_replica_sets:
            for rs in self.owned_replica_sets(updated, target.context):
                annotations = rs.get("metadata", {}).get("annotations") or {}
                if templates_equal_ignoring_hash(rs.get("spec", {}).get("template", {}), template):
                    return bool(annotations.get(CHANGE_CAUSE_ANNOTATION) == cause)
            return False
        for revision in workload_history(updated, self.owned_revisions(target, updated)):
            if revision.is_current:
                return revision.change_cause == cause
        return False

    def _ownership(self, target: Target, obj: Json, action: str) -> tuple[str, ...]:
        """Who else owns this object: refuses a GitOps-managed target when the policy says
        `gitops: refuse`, else returns the lines that say so (and, for scale, the HPA)."""
        owner = ownership.gitops_owner(obj)
        if owner is not None and self.gitops == "refuse":
            raise Refused(
                f"{owner.describe()} manages {target.display} `{target.name}`; the policy "
                f"(`gitops: refuse`) leaves changes to it. Nothing was changed: change it in "
                f"Git instead."
            )
        return self.ownership_notices(target, action, obj)

    def ownership_notices(
        self, target: Target, action: str, obj: Json | None = None
    ) -> tuple[str, ...]:
        """What the reply would say about who else owns the object (GitOps tool, HPA for
        `scale`), for an approval card; never refuses."""
        obj = self.get(target) if obj is None else obj
        owner = ownership.gitops_owner(obj)
        lines = [] if owner is None else [ownership.gitops_notice(owner)]
        if action in AUTOSCALED_ACTIONS:
            try:
                autoscalers = self.on(target.context).list_autoscalers(target.namespace)
            except (Forbidden, NotFound):
                autoscalers = []
            hpa = ownership.autoscaler_for(target.kind, target.name, autoscalers)
            if hpa is not None:
                lines.append(ownership.autoscaler_notice(hpa))
        return tuple(lines)

    def _write(self, context: str, deployment: Json, write: Callable[[], Json]) -> Json:
        """Runs a write pinned to `deployment`'s resourceVersion, claiming first the generation
        it will make (the current one + 1: nobody else can write in between)."""
        meta = deployment.get("metadata", {})
        uid = str(meta.get("uid") or "")
        before = int(meta.get("generation") or 0)
        claimed = bool(uid) and self._own(lambda o: o.claim(uid, before + 1), context)
        try:
            updated = write()
        except OutcomeUnknown:
            raise  # it may have been applied: the claim stays until it expires
        except RolloutBotError:
            if claimed:
                self._own(lambda o: o.release(uid, before + 1), context)
            raise
        after = int(updated.get("metadata", {}).get("generation") or 0)
        if uid and after != before + 1:
            if claimed:
                self._own(lambda o: o.release(uid, before + 1), context)
            if after <= before:
                return updated  # the spec did not change: no new generation to own
        if uid:
            self._own(lambda o: o.mark_ours(uid, after), context)
        return updated

    def _own(self, record: Callable[[Ownership], None], context: str = "") -> bool:
        claims = self._claims
        if isinstance(claims, Mapping):
            claims = claims.get(context or self.default_context)
        if claims is None:
            return False
        try:
            record(claims)
        except Exception as exc:  # bookkeeping: it must never stop or fail a change
            log.warning("could not record which generation the bot made: %s", failure_name(exc))
            return False
        return True

    def _with_fresh_state(
        self,
        target: Target,
        attempt: Callable[[Json], Change],
        expect: str | None,
        action: ChangeAction,
    ) -> Change:
        for tries in range(1, CONFLICT_ATTEMPTS + 1):
            deployment = self.get(target)
            if expect is not None and binding(deployment, action) != expect:
                raise Refused(
                    f"`{target.name}` changed since this was requested (its pod template or "
                    "the fields this change sets are different now). Nothing was changed; "
                    "request it again against the current state."
                )
            try:
                return attempt(deployment)
            except Conflict:
                log.info("conflict on %s (attempt %d), retrying on fresh state", target, tries)
                if tries == CONFLICT_ATTEMPTS:
                    raise
                time.sleep(CONFLICT_BACKOFF * tries * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    def _changed(
        self,
        target: Target,
        action: ChangeAction,
        before: Json,
        after: Json,
        verb: str,
        *,
        details: tuple[str, ...] = (),
        starts_rollout: bool = True,
        notices: tuple[str, ...] = (),
        revision: int | None = None,
        warnings: tuple[str, ...] = (),
    ) -> Change:
        return Change(
            target=target,
            action=action,
            summary=f"{target.ref} {verb}",
            changed=True,
            starts_rollout=starts_rollout and not after.get("spec", {}).get("paused", False),
            revision_before=revision if revision is not None else self._revision(target, before),
            images_before=container_images(before),
            images_after=container_images(after),
            details=details,
            deployment=after,
            notices=notices,
            warnings=warnings,
        )

    def _no_change(
        self,
        target: Target,
        action: ChangeAction,
        deployment: Json,
        message: str,
        *,
        revision: int | None = None,
        details: tuple[str, ...] = (),
        warnings: tuple[str, ...] = (),
    ) -> Change:
        """Nothing was sent. `message` follows the object's name as kubectl's line; empty
        where kubectl prints nothing."""
        return Change(
            target=target,
            action=action,
            summary=f"{target.ref} {message}" if message else "",
            changed=False,
            starts_rollout=False,
            revision_before=revision
            if revision is not None
            else self._revision(target, deployment),
            images_before=container_images(deployment),
            images_after=container_images(deployment),
            details=details,
            deployment=deployment,
            warnings=warnings,
        )


def binding(deployment: Json, action: str) -> str:
    """What an approval is bound to: the object (uid), its pod template, and the fields the
    action changes. Not `metadata.generation`: an HPA scaling the Deployment must not void an
    image approval, while any change to the template must."""
    spec = deployment.get("spec", {})
    content = {
        "uid": deployment.get("metadata", {}).get("uid", ""),
        "template": spec.get("template", {}),
        **{name: spec.get(name) for name in BOUND_FIELDS.get(action, ())},
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
