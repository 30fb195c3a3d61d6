"""Who is in which Slack user group, asked of Slack and cached.

`usergroups.users.list` is a Tier 2 method (about 20 calls a minute), so memberships are cached
for `ttl` seconds. When Slack cannot be asked, the answer is an error, never a guess: a group
grant must not be assumed, and an approval must not count.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.domain.errors import RolloutBotError

log = logging.getLogger(__name__)


class DirectoryUnavailable(RolloutBotError):
    def __init__(self) -> None:
        super().__init__(
            "The bot could not ask Slack who is in the user groups the policy names, so it "
            "cannot tell whether you may do this. Nothing was changed; try again in a minute."
        )


class SlackDirectory:
    def __init__(
        self,
        client: WebClient,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def groups_of(self, user_id: str, groups: Iterable[str]) -> frozenset[str]:
        """The subset of `groups` that `user_id` belongs to."""
        return frozenset(g for g in groups if user_id in self.members(g))

    def members(self, group_id: str) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            cached = self._members.get(group_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            response = self._client.usergroups_users_list(usergroup=group_id)
        except SlackApiError as exc:
            if exc.response.get("error") == "no_such_subteam":
                members: frozenset[str] = frozenset()
            else:
                log.warning(
                    "usergroups.users.list %s failed: %s", group_id, exc.response.get("error")
                )
                raise DirectoryUnavailable() from None
        except (SlackClientError, OSError) as exc:
            log.warning("usergroups.users.list %s failed: %s", group_id, type(exc).__name__)
            raise DirectoryUnavailable() from None
        else:
            members = frozenset(str(u) for u in response.get("users") or [])
        with self._lock:
            self._members[group_id] = (now, members)
        return members
