"""The policy's promotion pipelines: from which workload to which waves of targets, with what
gate and soak. The plan and its state machine are bot.domain.promotion.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, model_validator

from bot.domain import kinds
from bot.domain.policy.fields import Context, Namespace, _Model, _ttl

_PIPELINE_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")
# A soak longer than a day is a calendar entry, not a wave.
_MAX_SOAK: Final = timedelta(days=1)


def _pipeline_name(value: str) -> str:
    if not _PIPELINE_NAME.fullmatch(value):
        raise ValueError(
            f"`{value}` is not a valid pipeline name: use at most 40 lowercase letters, digits "
            "and `-`, starting and ending with a letter or digit"
        )
    return value


def _workload_ref(value: str) -> str:
    """``deploy/web``, ``sts/db``, ``ds/agent`` or a bare Deployment name, as kubectl writes it."""
    spelling, slash, name = value.partition("/")
    if slash and kinds.parse_kind(spelling) is None:
        raise ValueError(
            f"`{value}` is not a Deployment, StatefulSet or DaemonSet: write `deploy/NAME`, "
            "`sts/NAME` or `ds/NAME`"
        )
    name = name if slash else value
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise ValueError(
            f"`{name}` is not a valid workload name: use at most 253 lowercase letters, digits, "
            "`-` and `.`, starting and ending with a letter or digit"
        )
    return value


def _soak(value: timedelta) -> timedelta:
    if not timedelta(0) <= value <= _MAX_SOAK:
        raise ValueError("must be between `0s` and `1d`")
    return value


_DNS_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
PipelineName = Annotated[str, AfterValidator(_pipeline_name)]
WorkloadRef = Annotated[str, AfterValidator(_workload_ref)]
Soak = Annotated[timedelta, BeforeValidator(_ttl), AfterValidator(_soak)]


class PipelineTarget(_Model):
    """One workload in one cluster: where a promotion reads its images, or writes them."""

    context: Context
    namespace: Namespace
    workload: WorkloadRef

    @property
    def kind(self) -> str:
        spelling, slash, _ = self.workload.partition("/")
        return (kinds.parse_kind(spelling) or "deployment") if slash else "deployment"

    @property
    def name(self) -> str:
        spelling, slash, name = self.workload.partition("/")
        return name if slash else spelling

    def where(self) -> str:
        """`prod-eu/web/deploy/web`: context, namespace, workload."""
        return f"{self.context}/{self.namespace}/{self.workload}"


class Pipeline(_Model):
    """Promote what runs at ``from`` to ``waves`` of targets, one wave after another: each must
    stay healthy for ``soak`` before the ``gate`` (a person's approval, or ``auto``) lets the
    next start; a failure halts the line (``on_failure: rollback`` first undoes the wave)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: PipelineTarget = Field(alias="from")
    waves: Annotated[
        list[Annotated[list[PipelineTarget], Field(min_length=1)]], Field(min_length=1)
    ]
    gate: Literal["approval", "auto"] = "approval"
    soak: Soak = timedelta(minutes=5)
    on_failure: Literal["halt", "rollback"] = "halt"

    @model_validator(mode="after")
    def _distinct_targets(self) -> Pipeline:
        def key(target: PipelineTarget) -> tuple[str, str, str, str]:
            return (target.context, target.namespace, target.kind, target.name)

        seen = {key(self.source)}
        for wave in self.waves:
            for target in wave:
                if key(target) in seen:
                    raise ValueError(
                        f"`{target.where()}` is named twice (as the source or in two waves); a "
                        "pipeline promotes to each workload once, and never from itself"
                    )
                seen.add(key(target))
        return self
