"""The domain error tree. Every error carries a message that is safe to show a Slack user.

    RolloutBotError                 user_message: what was refused, why, what to do
    ├── NotPermitted                the policy does not allow this user/action/namespace
    ├── ClusterError                anything the Kubernetes API said or failed to say
    │   ├── NotFound                deployment (with close names) or namespace missing
    │   ├── Forbidden               RBAC lacks a verb on a resource (the bot's, or the person's)
    │   ├── Conflict                the object kept changing under us (after retries)
    │   ├── Invalid                 the API server rejected the change (422/400)
    │   └── ClusterUnavailable      unreachable, timed out or 5xx: nothing was changed
    │       └── OutcomeUnknown      a write was sent but went unanswered: maybe applied
    ├── Refused                     kubectl's own refusals (paused, unknown revision, ...)
    └── UnknownContext              --context (or a channel's context) names no configured one

    StoreError                      the state store (Redis) failed; .message is safe to show
    ├── StoreUnavailable            Redis refused, timed out, or errored: retryable later
    │   └── NotDurable              written, but too few replicas confirmed it: not acted on
    └── StoreCorrupt                a stored record could not be read back: not retryable
        └── AuditTrailUntrusted     the audit trail's head fails its check: nothing is appended

    StoreConflict                   a compare-and-set write lost to another writer: read again

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


class UnknownContext(RolloutBotError):
    """A context (cluster) the bot does not serve: the message lists the known ones and the
    closest match."""

    def __init__(self, context: str, known: tuple[str, ...]) -> None:
        import difflib

        names = sorted(name for name in known if name)
        close = difflib.get_close_matches(context, names, n=1, cutoff=0.5)
        message = f"Unknown context `{context}`."
        if close:
            message += f" Did you mean `{close[0]}`?"
        message += " Known contexts: " + (", ".join(f"`{n}`" for n in names) or "none") + "."
        super().__init__(message + " Nothing was changed.")
        self.context = context
        self.known = tuple(names)


class ClusterError(RolloutBotError):
    pass


class NotFound(ClusterError):
    pass


class Forbidden(ClusterError):
    """`detail` is the API server's own message (`deployments.apps "web" is forbidden: User
    "..." cannot patch ...`): it names the identity refused, which impersonation shows."""

    def __init__(self, user_message: str, *, detail: str = "") -> None:
        super().__init__(user_message)
        self.detail = detail


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


class StoreError(Exception):
    """A state-store failure; the message is safe to show to a Slack user."""

    def __init__(self, message: str, *, operation: str = "", cause: str = "") -> None:
        super().__init__(message)
        self.message = message
        #: What the store was doing, e.g. "approve" (for logs and metrics).
        self.operation = operation
        #: The class name of the underlying error, e.g. "TimeoutError"; never its text.
        self.cause = cause


class StoreUnavailable(StoreError):
    """Redis could not be reached or did not answer in time.

    For writes the outcome may be unknown (the reply can be lost after Redis applied the
    command); callers re-read before deciding, and never assume "nothing happened" unless
    the operation is idempotent.
    """

    def __init__(self, operation: str = "", *, cause: str = "") -> None:
        super().__init__(
            "The bot's state store is unavailable right now; try again in a minute.",
            operation=operation,
            cause=cause,
        )


class StoreCorrupt(StoreError):
    """A record in Redis is not in the shape this version of the bot writes."""

    def __init__(self, operation: str = "", *, cause: str = "") -> None:
        super().__init__(
            "A stored record could not be read; an operator has to look at it.",
            operation=operation,
            cause=cause,
        )


class AuditTrailUntrusted(StoreCorrupt):
    """The audit trail's newest record is not one this bot can vouch for (e.g. unsigned while
    an audit key is configured), so nothing is appended to it: every change is refused until
    an operator has looked. Reads go on."""

    def __init__(self, operation: str = "", *, cause: str = "") -> None:
        StoreError.__init__(
            self,
            "The audit trail failed its integrity check, so the bot records no more changes "
            "until an operator has looked at it (`rollout-bot audit verify` names the problem).",
            operation=operation,
            cause=cause,
        )


class NotDurable(StoreUnavailable):
    """Redis took a write that authorises a change, but fewer replicas than
    ROLLOUT_BOT_REDIS_MIN_REPLICAS acknowledged it in time (Redis WAIT): a failover now could
    lose it. The change it would authorise is not made, now or later."""

    def __init__(self, operation: str = "", *, required: int = 0, acknowledged: int = 0) -> None:
        super().__init__(operation, cause="NotDurable")
        self.message = (
            "The audit trail could not be made durable: "
            f"{acknowledged} of the {required} Redis replica(s) it needs confirmed it in time "
            "(a Redis failover or a lagging replica). The change was not made and will not "
            "be made later; try again in a minute."
        )
        self.args = (self.message,)
        self.required = required
        self.acknowledged = acknowledged
        #: What Redis answered to the write itself (it was taken, only not confirmed).
        self.reply: object = None


class StoreConflict(Exception):
    """Someone else wrote the record (a promotion, or its pipeline) first: read again and
    retry. Not a `StoreError`: nothing failed, the write only lost a race."""


def failure_name(exc: BaseException) -> str:
    """The class a log line names for a failure: for a store error, the class of the store's
    own error that the adapter kept in `cause` (`ConnectionError`, `TimeoutError`), which is
    what an operator searches the logs for; else the exception's own class. Never its text."""
    if isinstance(exc, StoreError) and exc.cause:
        return exc.cause
    return type(exc).__name__
