"""The values verbs read from their words: a workload, an image, a replica count, a revision.

Each reader takes the verb's ``Args`` so a bad value fails with the verb's usage line.
A workload is written as kubectl writes it: a bare ``NAME`` is a Deployment; ``deploy/NAME``,
``sts/NAME``, ``ds/NAME`` (singular, plural, ``….apps``) name a Deployment, StatefulSet or
DaemonSet.
"""

from __future__ import annotations

import re
from typing import Final

from bot.domain import kinds
from bot.domain.kinds import Kind
from bot.domain.verbs.grammar import DNS_LABEL, MAX_IMAGE_LENGTH, Args
from bot.domain.verbs.text import show

__all__ = [
    "WORKLOAD",
    "image",
    "number",
    "replicas",
    "revision",
    "set_image_pair",
    "signed_revision",
    "target",
]

#: What a verb that names a workload asks for when it is missing.
WORKLOAD: Final = "a deployment name"

_MAX_IMAGE_NAME_LENGTH: Final = 255
# Deployment revisions are int64 values in the `deployment.kubernetes.io/revision` annotation.
_MAX_REVISION: Final = 2**63 - 1
_DNS_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_DIGITS: Final = re.compile(r"[0-9]{1,19}")
_SIGNED: Final = re.compile(r"[+-]?[0-9]{1,19}")

# Docker's reference grammar: [domain[:port]/]path[:tag][@digest], path lowercase.
_PATH_COMPONENT: Final = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT: Final = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IMAGE: Final = re.compile(
    rf"(?P<name>(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?/)?"
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@(?:sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128}))?"
)


def target(args: Args, token: str) -> tuple[Kind, str]:
    """(kind, name) from ``NAME`` (a Deployment), ``KIND/NAME`` as kubectl writes it
    (``deploy/``, ``sts/``, ``ds/``, singular, plural, ``….apps``)."""
    spelling, slash, name = token.partition("/")
    kind: Kind = "deployment"
    if not slash:
        name = token
    else:
        found = kinds.parse_kind(spelling)
        if found is None:
            args.fail(
                f"`{show(token)}` is not a Deployment, StatefulSet or DaemonSet: write `NAME`, "
                "`deploy/NAME`, `sts/NAME` or `ds/NAME`."
            )
        kind = found
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        noun = "deployment" if kind == "deployment" else kinds.info(kind).display
        args.fail(
            f"`{show(name)}` is not a valid {noun} name: use at most 253 lowercase "
            "letters, digits, `-` and `.`, starting and ending with a letter or digit."
        )
    return kind, name


def only_workload(args: Args) -> tuple[Kind, str]:
    """(kind, name) of the one WORKLOAD a verb takes, with nothing positional after it."""
    kind, name = target(args, args.positional(0, WORKLOAD))
    args.no_more_than(1)
    return kind, name


def image(args: Args, value: str) -> str:
    if len(value) > MAX_IMAGE_LENGTH:
        args.fail(f"the image reference is too long (the limit is {MAX_IMAGE_LENGTH}).")
    match = _IMAGE.fullmatch(value)
    if match is None:
        if _IMAGE.fullmatch(value.lower()):
            args.fail(f"`{show(value)}` is not a valid image: repository names are lowercase.")
        args.fail(
            f"`{show(value)}` is not a valid image reference; "
            "expected something like `nginx:1.27` or `registry.example.com/team/app@sha256:…`."
        )
    if len(match.group("name")) > _MAX_IMAGE_NAME_LENGTH:
        args.fail(f"the image name is too long (the limit is {_MAX_IMAGE_NAME_LENGTH}).")
    return value


def number(value: str, lowest: int, highest: int) -> int | None:
    if not _DIGITS.fullmatch(value):
        return None
    found = int(value)
    return found if lowest <= found <= highest else None


def replicas(args: Args, value: str, max_replicas: int) -> int:
    found = number(value, 0, max_replicas)
    if found is None:
        args.fail(
            f"`--replicas` must be a whole number from 0 to {max_replicas}, got `{show(value)}`."
        )
    return found


def revision(args: Args, value: str, what: str) -> int:
    found = number(value, 1, _MAX_REVISION)
    if found is None:
        args.fail(f"{what} must be a revision number (1 or more), got `{show(value)}`.")
    return found


def signed_revision(args: Args, value: str, what: str, usage: str) -> int:
    """A revision flag as kubectl's int64 flag reads it: any whole number, negative too (what
    a negative one means is kubectl's verb's own answer)."""
    if not _SIGNED.fullmatch(value) or abs(int(value)) > _MAX_REVISION:
        args.fail(f"{what} must be {usage}, got `{show(value)}`.")
    return int(value)


def set_image_pair(args: Args, token: str) -> tuple[str, str]:
    container, equals, reference = token.partition("=")
    if not equals:
        args.fail(f"expected `CONTAINER=IMAGE`, got `{show(token)}`.")
    if container != "*" and (len(container) > 63 or not DNS_LABEL.fullmatch(container)):
        args.fail(
            f"`{show(container)}` is not a valid container name: use at most 63 lowercase "
            "letters, digits and `-`, or `*` for every container."
        )
    if not reference:
        args.fail(f"container `{show(container)}` needs an image after `=`.")
    return container, image(args, reference)
