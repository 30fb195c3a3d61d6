"""Who a Slack user is, for their Kubernetes identity: `users.info` (email, guest, bot) and the
handles of the user groups they are in (`usergroups.list`), asked of Slack and cached.

Only impersonate mode asks (scopes `users:read`, `users:read.email`; `usergroups:read` for
`{usergroup_handle}`). `users.info` is Tier 4 and `usergroups.list` Tier 2, so answers are
cached for `ttl` seconds, the cache bounded. When Slack cannot be asked the answer is an error,
never a guess: a change must not run under a made-up identity.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.domain.errors import NotPermitted, RolloutBotError
from bot.domain.identity import SlackPerson

log = logging.getLogger(__name__)

# A profile change (new email, made a guest) takes effect within five minutes; within that
# time a person's commands cost no Slack call.
PERSON_TTL = 300.0
# Enough for every active person of a large workspace; one entry is a few hundred bytes.
MAX_PEOPLE = 4096


class PeopleUnavailable(RolloutBotError):
    def __init__(self) -> None:
        super().__init__(
            "The bot could not ask Slack who you are, so it cannot act as you in Kubernetes. "
            "Nothing was changed; try again in a minute."
        )


class UnknownPerson(NotPermitted):
    def __init__(self) -> None:
        super().__init__(
            "Slack does not know your user, so the bot cannot act as you in Kubernetes. "
            "Nothing was changed."
        )


class SlackPeople:
    def __init__(
        self,
        client: WebClient,
        *,
        ttl: float = PERSON_TTL,
        capacity: int = MAX_PEOPLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._capacity = capacity
        self._clock = clock
        self._people: OrderedDict[str, tuple[float, SlackPerson]] = OrderedDict()
        self._handles: tuple[float, dict[str, tuple[str, ...]]] | None = None
        self._lock = threading.Lock()

    def person(self, user_id: str, *, with_usergroups: bool = False) -> SlackPerson:
        """What Slack says about `user_id`; with the handles of their user groups when asked.
        Raises UnknownPerson or PeopleUnavailable."""
        now = self._clock()
        with self._lock:
            cached = self._people.get(user_id)
            if cached is not None and now - cached[0] < self._ttl:
                self._people.move_to_end(user_id)
                person = cached[1]
            else:
                person = None
        if person is None:
            person = self._ask(user_id)
            with self._lock:
                self._people[user_id] = (now, person)
                self._people.move_to_end(user_id)
                while len(self._people) > self._capacity:
                    self._people.popitem(last=False)
        if with_usergroups:
            handles = self._usergroup_handles(now).get(user_id, ())
            person = replace(person, usergroup_handles=handles)
        return person

    def _ask(self, user_id: str) -> SlackPerson:
        try:
            response = self._client.users_info(user=user_id)
        except SlackApiError as exc:
            if exc.response.get("error") == "user_not_found":
                raise UnknownPerson() from None
            log.warning("users.info failed: %s", exc.response.get("error"))
            raise PeopleUnavailable() from None
        except (SlackClientError, OSError) as exc:
            log.warning("users.info failed: %s", type(exc).__name__)
            raise PeopleUnavailable() from None
        return _person_of(response.get("user") or {}, user_id)

    def everyone(self, limit: int = 1000) -> list[SlackPerson]:
        """The workspace's members (at most `limit`), for `rollout-bot check`; with the handles
        of their user groups. Raises PeopleUnavailable."""
        people: list[SlackPerson] = []
        cursor = ""
        try:
            handles = self._usergroup_handles(self._clock())
            while len(people) < limit:
                response = self._client.users_list(limit=200, cursor=cursor or None)
                for user in response.get("members") or []:
                    person = _person_of(user, str(user.get("id") or ""))
                    groups = handles.get(person.slack_id, ())
                    people.append(replace(person, usergroup_handles=groups))
                cursor = str((response.get("response_metadata") or {}).get("next_cursor") or "")
                if not cursor:
                    break
        except SlackApiError as exc:
            log.warning("users.list failed: %s", exc.response.get("error"))
            raise PeopleUnavailable() from None
        except (SlackClientError, OSError) as exc:
            log.warning("users.list failed: %s", type(exc).__name__)
            raise PeopleUnavailable() from None
        return people[:limit]

    def _usergroup_handles(self, now: float) -> dict[str, tuple[str, ...]]:
        """user id -> the handles of the user groups they are in (one call for all groups)."""
        with self._lock:
            cached = self._handles
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            response = self._client.usergroups_list(include_users=True)
        except SlackApiError as exc:
            log.warning("usergroups.list failed: %s", exc.response.get("error"))
            raise PeopleUnavailable() from None
        except (SlackClientError, OSError) as exc:
            log.warning("usergroups.list failed: %s", type(exc).__name__)
            raise PeopleUnavailable() from None
        members: dict[str, list[str]] = {}
        for group in response.get("usergroups") or []:
            handle = str(group.get("handle") or "")
            if not handle or group.get("date_delete"):
                continue
            for user in group.get("users") or []:
                members.setdefault(str(user), []).append(handle)
        handles = {user: tuple(sorted(found)) for user, found in members.items()}
        with self._lock:
            self._handles = (now, handles)
        return handles


def _person_of(user: dict[str, Any], user_id: str) -> SlackPerson:
    profile: dict[str, Any] = user.get("profile") or {}
    return SlackPerson(
        slack_id=str(user.get("id") or user_id),
        handle=str(user.get("name") or ""),
        email=str(profile.get("email") or ""),
        guest=bool(user.get("is_restricted") or user.get("is_ultra_restricted")),
        bot=bool(user.get("is_bot") or user.get("is_app_user")) or user_id == "USLACKBOT",
        deleted=bool(user.get("deleted")),
    )
