"""The domain error tree. Every error carries a message that is safe to show a Slack user.

    RolloutBotError                 user_message: what was refused, why, what to do
    ├── NotPermitted                the policy does not allow this user/action/namespace
    ├── ClusterError                anything the Kubernetes API said or failed to say
    │   ├── NotFound                deployment (with close names) or namespace missing
    │   ├── Forbidden               the bot's own RBAC lacks a verb on a resource
    │   ├── Conflict                the object kept changing under us (after retries)
    │   ├── Invalid                 the API server rejected the change (422/400)
    │   └── ClusterUnavailable      unreachable, timed out or 5xx: nothing was changed
    │       └── OutcomeUnknown      a write was sent but went unanswered: maybe applied
    ├── Refused                     kubectl's own refusals (paused, unknown revision, ...)
    └── StoreUnavailable            Redis is down or slow (defined in bot.store.errors)

Raw exception text from the kubernetes or redis libraries never reaches `user_message`: it may
hold URLs, tokens or internal detail. It goes to the log at debug level at most.
"""

from __future__ import annotations


class RolloutBotError(Exception):
    """Base class: `user_message` is shown to the user verbatim (Slack mrkdwn)."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class NotPermitted(RolloutBotError):
    pass


class Refused(RolloutBotError):
    """The action is refused on the cluster's current state, exactly where kubectl refuses."""


class ClusterError(RolloutBotError):
    pass


class NotFound(ClusterError):
    pass


class Forbidden(ClusterError):
    pass


class Conflict(ClusterError):
    pass


class Invalid(ClusterError):
    pass


class ClusterUnavailable(ClusterError):
    pass


class OutcomeUnknown(ClusterUnavailable):
    """A write reached the wire but no answer came back: it may or may not have been applied.

    Never retried blindly; the user is pointed at the object's status instead.
    """
