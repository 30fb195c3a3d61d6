"""Which cluster a command works on: the kubeconfig contexts the bot serves.

    Contexts.resolve(requested, channel_default)   `--context`, else the channel's context
                                                   from the policy, else the default one;
                                                   an unknown name is refused (UnknownContext,
                                                   with the known names and a close match)

With one context (today's setups) the resolved context is "": targets, keys and replies stay
exactly as they were, and the one cluster is named `default` in the audit (its label).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.domain.errors import UnknownContext


@dataclass(frozen=True)
class Contexts:
    #: The contexts served, in configuration order.
    names: tuple[str, ...]
    #: The context of a command that names none in a channel bound to none.
    default: str
    #: Other names for a context (a one-cluster bot's kubeconfig context name, for its label).
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default not in self.names:
            raise ValueError("the default context is not among the contexts")

    @property
    def multi(self) -> bool:
        """Several clusters: everything the bot says names the cluster."""
        return len(self.names) > 1

    def resolve(self, requested: str | None, channel_default: str | None = None) -> str:
        """The context a command works on: a configured name with several clusters, "" with
        one. Raises UnknownContext for a name the bot does not serve."""
        name = requested or channel_default
        if name is None:
            return self.default if self.multi else ""
        name = self.aliases.get(name, name)
        if name not in self.names:
            raise UnknownContext(name, self.names)
        return name if self.multi else ""

    def label(self, context: str) -> str:
        """The name the audit and the policy know a context by ("" is the default one)."""
        return context or self.default


def single(name: str) -> Contexts:
    """One cluster, as before contexts existed."""
    return Contexts((name,), name)
