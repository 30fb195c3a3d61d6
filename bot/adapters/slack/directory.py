"""Who is in which Slack user group, and who is a full member of the bot's workspace, asked
of Slack and cached.

`usergroups.users.list` is a Tier 2 method (about 20 calls a minute), so memberships are cached
for `ttl` seconds; so is each user's `users.info`. When Slack cannot be asked, the answer is an
error, never a guess: a group grant must not be assumed, and an approval must not count.
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
    def __init__(self, what: str = "who is in the user groups the policy names") -> None:
        super().__init__(
            f"The bot could not ask Slack {what}, so it cannot tell whether you may do this. "
            "Nothing was changed; try again in a minute."
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
        self._full_members: dict[str, tuple[float, bool]] = {}
        self._home_team: str | None = None
        self._lock = threading.Lock()

    def is_full_member(self, user_id: str) -> bool:
        """A full member of the workspace the bot is installed in: not a guest (single- or
        multi-channel), not deactivated, not a user of another workspace (Slack Connect)."""
        now = self._clock()
        with self._lock:
            cached = self._full_members.get(user_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        what = "whether you are a member of this workspace"
        try:
            home = self._home()
            response = self._client.users_info(user=user_id)
        except SlackApiError as exc:
            if exc.response.get("error") != "user_not_found":
                log.warning("users.info failed: %s", exc.response.get("error"))
                raise DirectoryUnavailable(what) from None
            full = False
        except (SlackClientError, OSError) as exc:
            log.warning("users.info failed: %s", type(exc).__name__)
            raise DirectoryUnavailable(what) from None
        else:
            user = response.get("user") or {}
            full = (
                str(user.get("team_id") or "") == home
                and not user.get("deleted")
                and not user.get("is_restricted")
                and not user.get("is_ultra_restricted")
                and not user.get("is_stranger")
            )
        with self._lock:
            self._full_members[user_id] = (now, full)
        return full

    def _home(self) -> str:
        """The workspace the bot is installed in (auth.test, asked once)."""
        if self._home_team is None:
            team = str(self._client.auth_test().get("team_id") or "")
            if not team:
                raise SlackClientError("auth.test named no team")
            self._home_team = team
        return self._home_team

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
