"""The /rollout grammar: every verb, every spelling Slack produces, every refusal."""

# The curly quotes, long dashes and look-alike digits in this file are the inputs under test.
# ruff: noqa: RUF001

from __future__ import annotations

import dataclasses
import time
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.domain.verbs import (
    ACTIONS,
    GRAMMAR,
    HELP_TEXT,
    MAX_TEXT_LENGTH,
    USAGE,
    VERBS,
    Approvals,
    Audit,
    Command,
    CommandBase,
    CommandError,
    Create,
    Diff,
    Help,
    History,
    ListDeployments,
    Pause,
    Restart,
    Resume,
    Scale,
    SetImage,
    Status,
    Undo,
    parse_command,
    render_command,
)

pytestmark = pytest.mark.timeout(60)

DIGEST = "sha256:" + "0123456789abcdef" * 4
# The contract, copied from the design brief: USAGE must reproduce it exactly.
CONTRACT = """\
/rollout help [VERB]
/rollout list [-n NS]
/rollout status DEPLOY [-n NS]
/rollout create DEPLOY --image=IMAGE [--replicas=N] [-n NS]
/rollout set image DEPLOY CONTAINER=IMAGE [CONTAINER=IMAGE ...] [-n NS] [--reason=TEXT]
/rollout scale DEPLOY --replicas=N [-n NS] [--reason=TEXT]
/rollout history DEPLOY [--revision=N] [-n NS]
/rollout diff DEPLOY REV [REV2] [-n NS]
/rollout undo DEPLOY [--to-revision=N] [-n NS] [--reason=TEXT]
/rollout pause DEPLOY [-n NS]
/rollout resume DEPLOY [-n NS]
/rollout restart DEPLOY [-n NS] [--reason=TEXT]
/rollout approvals [-n NS]
/rollout audit [DEPLOY] [-n NS] [--limit=N]
/rollout freeze -n NS --for=DURATION --reason=TEXT
/rollout unfreeze -n NS
/rollout freezes [-n NS]
/rollout canary deploy/NAME --image CONTAINER=IMAGE [--replicas N | --weight P%] \
[--analysis 10m] [--auto-promote] [-n NS]
/rollout canary status DEPLOY [-n NS]
/rollout canary promote DEPLOY [-n NS]
/rollout canary abort DEPLOY [-n NS]
/rollout promote NAME [--image app=repo:tag] [--dry-run] [--resume]
/rollout promotions"""


def error_of(text: str, **kwargs: int) -> CommandError:
    with pytest.raises(CommandError) as caught:
        parse_command(text, **kwargs)
    return caught.value


# --- the grammar as published ----------------------------------------------------------------


def test_usage_reproduces_the_contract_in_grammar_order() -> None:
    assert GRAMMAR == CONTRACT
    assert tuple(USAGE) == VERBS
    assert all(USAGE[verb].startswith(f"/rollout {verb}") for verb in VERBS)


def test_every_verb_has_help_text() -> None:
    assert set(HELP_TEXT) == set(VERBS)
    assert all(text.endswith(".") and len(text) < 100 for text in HELP_TEXT.values())


def test_actions_are_the_policy_names_in_grammar_order() -> None:
    assert ACTIONS == (
        "list",
        "status",
        "create",
        "set-image",
        "scale",
        "history",
        "diff",
        "undo",
        "pause",
        "resume",
        "restart",
        "approvals",
        "audit",
        "freeze",
        "freezes",
        "promote",
        "promotions",
    )


@pytest.mark.parametrize(
    ("command", "action", "is_mutation"),
    [
        (Help(), "help", False),
        (ListDeployments(), "list", False),
        (Status(name="web"), "status", False),
        (Create(name="web", image="nginx"), "create", True),
        (SetImage(name="web", images=(("*", "nginx"),)), "set-image", True),
        (Scale(name="web", replicas=1), "scale", True),
        (History(name="web"), "history", False),
        (Diff(name="web", rev=1), "diff", False),
        (Undo(name="web"), "undo", True),
        (Pause(name="web"), "pause", True),
        (Resume(name="web"), "resume", True),
        (Restart(name="web"), "restart", True),
        (Approvals(), "approvals", False),
        (Audit(), "audit", False),
    ],
)
def test_each_command_names_its_policy_action(
    command: Command, action: str, is_mutation: bool
) -> None:
    assert command.action == action
    assert command.is_mutation is is_mutation


def test_commands_are_frozen_and_the_caller_fills_in_the_namespace() -> None:
    command = parse_command("scale web --replicas=3")
    assert isinstance(command, Scale)
    with pytest.raises(dataclasses.FrozenInstanceError):
        command.replicas = 4  # type: ignore[misc]
    assert dataclasses.replace(command, namespace="prod") == Scale(
        name="web", replicas=3, namespace="prod"
    )


# --- every verb, every spelling --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Help()),
        ("   ", Help()),
        ("help", Help()),
        ("help scale", Help(verb="scale")),
        ("help set image", Help(verb="set image")),
        ("help set", Help(verb="set image")),
        ("help set-image", Help(verb="set image")),
        ("help HISTORY", Help(verb="history")),
        ("list", ListDeployments()),
        ("list -n prod", ListDeployments(namespace="prod")),
        ("list -n=prod", ListDeployments(namespace="prod")),
        ("list --namespace prod", ListDeployments(namespace="prod")),
        ("list --namespace=prod", ListDeployments(namespace="prod")),
        ("status web", Status(name="web")),
        ("status web -n prod", Status(name="web", namespace="prod")),
        ("status -n prod web", Status(name="web", namespace="prod")),
        ("STATUS web", Status(name="web")),
        (
            "create web --image=nginx:1.27",
            Create(name="web", image="nginx:1.27"),
        ),
        (
            "create web --image nginx:1.27 --replicas 0 --namespace=dev",
            Create(name="web", image="nginx:1.27", replicas=0, namespace="dev"),
        ),
        (
            "create web --replicas=3 -n dev --image=nginx:1.27",
            Create(name="web", image="nginx:1.27", replicas=3, namespace="dev"),
        ),
        (
            "set image web web=nginx:1.19-alpine",
            SetImage(name="web", images=(("web", "nginx:1.19-alpine"),)),
        ),
        (
            f"set image deploy/web app=registry.example.com:5000/team/app@{DIGEST} "
            "sidecar=envoy:v1.31 -n prod --reason=CVE-2024-1",
            SetImage(
                name="web",
                images=(
                    ("app", f"registry.example.com:5000/team/app@{DIGEST}"),
                    ("sidecar", "envoy:v1.31"),
                ),
                namespace="prod",
                reason="CVE-2024-1",
            ),
        ),
        (
            'SET Image web *=nginx:1.27 --reason "fixes CVE-1 now"',
            SetImage(name="web", images=(("*", "nginx:1.27"),), reason="fixes CVE-1 now"),
        ),
        ("scale web --replicas=3", Scale(name="web", replicas=3)),
        ("scale web --replicas 0", Scale(name="web", replicas=0)),
        ("scale web --replicas=007", Scale(name="web", replicas=7)),
        (
            'scale web --replicas=5 -n prod --reason="fixes CVE-1 now"',
            Scale(name="web", replicas=5, namespace="prod", reason="fixes CVE-1 now"),
        ),
        (
            "scale web --reason 'peak traffic' --namespace prod --replicas 5",
            Scale(name="web", replicas=5, namespace="prod", reason="peak traffic"),
        ),
        ("history web", History(name="web")),
        ("history web --revision=2", History(name="web", revision=2)),
        (
            "history web --revision 2 -n prod",
            History(name="web", revision=2, namespace="prod"),
        ),
        ("diff web 3", Diff(name="web", rev=3)),
        ("diff web 3 5 -n prod", Diff(name="web", rev=3, rev2=5, namespace="prod")),
        ("diff web 5 3", Diff(name="web", rev=5, rev2=3)),
        ("undo web", Undo(name="web")),
        ("undo web --to-revision=0", Undo(name="web")),
        ("undo web --to-revision=-1", Undo(name="web", to_revision=-1)),
        (
            "set image web a=nginx a=nginx:2",
            SetImage(name="web", images=(("a", "nginx"), ("a", "nginx:2"))),
        ),
        ("history web --revision=0", History(name="web")),
        ("undo web --to-revision 4", Undo(name="web", to_revision=4)),
        (
            "undo web --to-revision=4 -n prod --reason=broken",
            Undo(name="web", to_revision=4, namespace="prod", reason="broken"),
        ),
        ("pause web", Pause(name="web")),
        ("pause web --namespace prod", Pause(name="web", namespace="prod")),
        ("resume web", Resume(name="web")),
        ("resume web -n=prod", Resume(name="web", namespace="prod")),
        ("restart web", Restart(name="web")),
        (
            "restart web -n prod --reason 'config reload'",
            Restart(name="web", namespace="prod", reason="config reload"),
        ),
        ("approvals", Approvals()),
        ("approvals -n prod", Approvals(namespace="prod")),
        ("approvals --namespace=prod", Approvals(namespace="prod")),
        ("audit", Audit()),
        ("audit web", Audit(name="web")),
        ("audit --limit=500", Audit(limit=500)),
        ("audit web -n prod --limit 1", Audit(name="web", namespace="prod", limit=1)),
    ],
)
def test_parses_every_verb_and_flag_spelling(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    "target",
    [
        "web",
        "deploy/web",
        "deployment/web",
        "deployments/web",
        "deployment.apps/web",
        "deployments.apps/web",
        "Deployment/web",
    ],
)
def test_a_deployment_may_carry_its_kubectl_kind(target: str) -> None:
    assert parse_command(f"restart {target}") == Restart(name="web")


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("sts/web", "statefulset"),
        ("statefulset/web", "statefulset"),
        ("statefulsets/web", "statefulset"),
        ("statefulset.apps/web", "statefulset"),
        ("StatefulSet/web", "statefulset"),
        ("ds/web", "daemonset"),
        ("daemonset/web", "daemonset"),
        ("daemonsets.apps/web", "daemonset"),
        ("deploy/web", "deployment"),
        ("web", "deployment"),
    ],
)
def test_every_workload_kind_is_written_as_kubectl_writes_it(target: str, kind: str) -> None:
    assert parse_command(f"undo {target} --to-revision=1") == Undo(
        name="web", kind=kind, to_revision=1
    )
    assert parse_command(f"history {target}") == History(name="web", kind=kind)


def test_slack_link_markup_around_a_qualified_kind_is_undone() -> None:
    assert parse_command("status <http://statefulset.apps/web|statefulset.apps/web>") == Status(
        name="web", kind="statefulset"
    )


def test_deployment_names_are_dns_subdomains() -> None:
    assert parse_command("status api.v2-web") == Status(name="api.v2-web")
    assert parse_command("status " + "a" * 253) == Status(name="a" * 253)


def test_max_replicas_is_configurable() -> None:
    assert parse_command("scale web --replicas=250", max_replicas=250) == Scale(
        name="web", replicas=250
    )
    assert error_of("scale web --replicas=6", max_replicas=5).message == (
        "`--replicas` must be a whole number from 0 to 5, got `6`."
    )


# --- what Slack and autocorrect do to the text -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("scale web —replicas=3", Scale(name="web", replicas=3)),
        ("scale web —replicas 3 –n prod", Scale(name="web", replicas=3, namespace="prod")),
        ("scale web --replicas=3 —n prod", Scale(name="web", replicas=3, namespace="prod")),
        ("scale web ―replicas=3 −n prod", Scale(name="web", replicas=3, namespace="prod")),
        ("status web –namespace=prod", Status(name="web", namespace="prod")),
        ("undo web —to-revision=2", Undo(name="web", to_revision=2)),
        (
            "scale web --replicas=3 --reason=“fixes bug”",
            Scale(name="web", replicas=3, reason="fixes bug"),
        ),
        (
            "scale web --replicas=3 --reason “fixes bug”",
            Scale(name="web", replicas=3, reason="fixes bug"),
        ),
        (
            "scale web --replicas=3 --reason=„fixes bug‟",
            Scale(name="web", replicas=3, reason="fixes bug"),
        ),
        (
            "scale web --replicas=3 --reason=‘fixes bug’",
            Scale(name="web", replicas=3, reason="fixes bug"),
        ),
        (
            "scale web --replicas=3 --reason=‘don’t page’",
            Scale(name="web", replicas=3, reason="don’t page"),
        ),
        (
            "scale web --replicas=3 --reason=“don’t page”",
            Scale(name="web", replicas=3, reason="don’t page"),
        ),
        (
            "scale web --replicas=3 --reason=don’t",
            Scale(name="web", replicas=3, reason="don’t"),
        ),
        ("scale\u00a0web\u202f--replicas=3", Scale(name="web", replicas=3)),
        ("scale web\u200b --replicas=3\ufeff", Scale(name="web", replicas=3)),
        ("scale web\n--replicas=3\t-n prod", Scale(name="web", replicas=3, namespace="prod")),
        (
            'scale web --replicas=3 --reason="first line\nsecond line"',
            Scale(name="web", replicas=3, reason="first line second line"),
        ),
    ],
)
def test_smart_quotes_long_dashes_and_odd_spaces_read_as_typed(
    text: str, expected: Command
) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "status <http://deployment.apps/web|deployment.apps/web>",
            Status(name="web"),
        ),
        (
            "set image web app=<http://registry.example.com/team/app:1.2|registry.example.com/team/app:1.2>",
            SetImage(name="web", images=(("app", "registry.example.com/team/app:1.2"),)),
        ),
        (
            'restart web --reason="asked by <@U0BOB|bob> in <#C0OPS|ops>"',
            Restart(name="web", reason="asked by @bob in #ops"),
        ),
        (
            'restart web --reason="ping <!here> and <@U0BOB>"',
            Restart(name="web", reason="ping @here and @U0BOB"),
        ),
        (
            'restart web --reason="<!subteam^S0SRE|@sre> &amp; dev &lt;3 &gt;_&lt; &amp;lt;"',
            Restart(name="web", reason="@sre & dev <3 >_< &lt;"),
        ),
    ],
)
def test_slack_markup_and_entities_are_undone(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


def test_a_link_without_label_keeps_its_url_which_is_not_an_image() -> None:
    error = error_of("set image web app=<http://registry.example.com/app:1.2>")
    assert error.message.startswith("`http://registry.example.com/app:1.2` is not a valid image")


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # verbs
        (
            "rollback web",
            "unknown command `rollback`. Did you mean `undo`? Commands: `help`, `list`, "
            "`status`, `create`, `set image`, `scale`, `history`, `diff`, `undo`, `pause`, "
            "`resume`, `restart`, `approvals`, `audit`, `freeze`, `unfreeze`, `freezes`, "
            "`canary`, `promote`, `promotions`.",
        ),
        ("stauts web", "unknown command `stauts`. Did you mean `status`? Commands: "),
        ("help deploy", "unknown command `deploy`. Did you mean `set image`? Commands: "),
        ("help frobnicate", "unknown command `frobnicate`. Commands: `help`, "),
        ("help scale undo", "unexpected extra argument `undo`."),
        ("help -n prod", "`help` does not take `-n`. It takes no flags."),
        ("set web", "`set` is followed by `image`."),
        ("set", "`set` is followed by `image`."),
        # positionals
        ("status", "`status` needs a deployment name."),
        ("status web api", "unexpected extra argument `api`."),
        ("list web", "unexpected extra argument `web`."),
        ("set image web", "`set image` needs at least one `CONTAINER=IMAGE`."),
        ("set image", "`set image` needs a deployment name."),
        ("diff web", "`diff` needs a revision number."),
        ("diff web 1 2 3", "unexpected extra argument `3`."),
        ("audit web api", "unexpected extra argument `api`."),
        # names
        (
            "status Web",
            "`Web` is not a valid deployment name: use at most 253 lowercase letters, digits, "
            "`-` and `.`, starting and ending with a letter or digit.",
        ),
        ("status web-", "`web-` is not a valid deployment name: "),
        ("status web..api", "`web..api` is not a valid deployment name: "),
        ("status deploy/", "`` is not a valid deployment name: "),
        ("status deploy/web/x", "`web/x` is not a valid deployment name: "),
        ("status " + "a" * 254, "`" + "a" * 57 + "…` is not a valid deployment name: "),
        (
            "status svc/web",
            "`svc/web` is not a Deployment, StatefulSet or DaemonSet: write `NAME`, "
            "`deploy/NAME`, `sts/NAME` or `ds/NAME`.",
        ),
        ("status sts/Web", "`Web` is not a valid StatefulSet name: "),
        (
            "create sts/web --image=nginx",
            "`create` makes Deployments only; create StatefulSets with kubectl",
        ),
        (
            "status web -n Prod",
            "`Prod` is not a valid namespace: use at most 63 lowercase letters, digits and `-`, "
            "starting and ending with a letter or digit.",
        ),
        ("status web -n prod.eu", "`prod.eu` is not a valid namespace: "),
        ("status web -n " + "a" * 64, "`" + "a" * 57 + "…` is not a valid namespace: "),
        # flags
        ("status web --bogus", "unknown flag `--bogus` for `status`. It takes `-n`."),
        (
            "scale web --replica=3",
            "unknown flag `--replica` for `scale`. Did you mean `--replicas`? "
            "It takes `--replicas`, `-n` or `--reason`.",
        ),
        (
            "scale web -nprod --replicas=1",
            "unknown flag `-nprod` for `scale`. Did you mean `-n prod`?",
        ),
        ("scale web ---replicas=1", "unknown flag `---replicas` for `scale`."),
        (
            "scale web -replicas=1",
            "unknown flag `-replicas` for `scale`. Did you mean `--replicas`?",
        ),
        ("scale web --n prod --replicas=1", "unknown flag `--n` for `scale`."),
        ("status web -", "unknown flag `-` for `status`."),
        ("status web —", "unknown flag `--` for `status`."),
        ("status web --reason=x", "`status` does not take `--reason`. It takes `-n`."),
        ("pause web --replicas=1", "`pause` does not take `--replicas`. It takes `-n`."),
        ("create web --reason=x --image=nginx", "`create` does not take `--reason`."),
        ("status web -n prod -n dev", "`-n` is given more than once."),
        ("status web -n prod --namespace=dev", "`-n` is given more than once."),
        ("scale web --replicas=1 --replicas=2", "`--replicas` is given more than once."),
        ("scale web --replicas", "`--replicas` needs a value, as in `--replicas=3`."),
        ("scale web --replicas=", "`--replicas` needs a value, as in `--replicas=3`."),
        ("scale web --replicas -n prod", "`--replicas` needs a value, as in `--replicas=3`."),
        ("status web -n", "`-n` needs a value, as in `-n prod`."),
        ("undo web --reason=", '`--reason` needs a value, as in `--reason="fixes the login bug"`.'),
        ("create web", "`create` needs `--image=IMAGE`."),
        ("scale web", "`scale` needs `--replicas=N`."),
        # numbers
        (
            "scale web --replicas=abc",
            "`--replicas` must be a whole number from 0 to 100, got `abc`.",
        ),
        ("scale web --replicas=３", "`--replicas` must be a whole number from 0 to 100, got `３`."),
        ("scale web --replicas=٣", "`--replicas` must be a whole number from 0 to 100, got `٣`."),
        (
            "scale web --replicas=1e3",
            "`--replicas` must be a whole number from 0 to 100, got `1e3`.",
        ),
        ("scale web --replicas=-1", "`--replicas` must be a whole number from 0 to 100, got `-1`."),
        ("scale web --replicas -1", "`--replicas` must be a whole number from 0 to 100, got `-1`."),
        ("scale web --replicas=+2", "`--replicas` must be a whole number from 0 to 100, got `+2`."),
        (
            "scale web --replicas=3.0",
            "`--replicas` must be a whole number from 0 to 100, got `3.0`.",
        ),
        (
            "scale web --replicas=1_0",
            "`--replicas` must be a whole number from 0 to 100, got `1_0`.",
        ),
        (
            "scale web '--replicas= 0x10'",
            "`--replicas` must be a whole number from 0 to 100, got ` 0x10`.",
        ),
        (
            "scale web --replicas=101",
            "`--replicas` must be a whole number from 0 to 100, got `101`.",
        ),
        (
            "scale web --replicas=" + "9" * 30,
            "`--replicas` must be a whole number from 0 to 100, got `" + "9" * 30 + "`.",
        ),
        ("create web --image=nginx --replicas=x", "`--replicas` must be a whole number from 0"),
        ("history web --revision=-2", "revision must be a positive integer: -2"),
        (
            "history web --revision=two",
            "`--revision` must be a revision number (0 lists them all), got `two`.",
        ),
        ("diff web 0", "REV must be a revision number (1 or more), got `0`."),
        ("diff web -1", "REV must be a revision number (1 or more), got `-1`."),
        ("diff web one", "REV must be a revision number (1 or more), got `one`."),
        ("diff web 2 x", "REV2 must be a revision number (1 or more), got `x`."),
        ("diff web 2 2", "both revisions are 2; name two different revisions."),
        (
            "undo web --to-revision=one",
            "`--to-revision` must be a revision number (0 means the previous one), got `one`.",
        ),
        ("audit --limit=0", "`--limit` must be a whole number from 1 to 500, got `0`."),
        ("audit --limit=501", "`--limit` must be a whole number from 1 to 500, got `501`."),
        # images
        (
            "create web --image=Nginx",
            "`Nginx` is not a valid image: repository names are lowercase.",
        ),
        (
            "create web --image=nginx:",
            "`nginx:` is not a valid image reference; expected something like `nginx:1.27` or "
            "`registry.example.com/team/app@sha256:…`.",
        ),
        ("create web --image='nginx 1.2'", "`nginx 1.2` is not a valid image reference;"),
        (
            "create web --image=nginx@sha256:abc",
            "`nginx@sha256:abc` is not a valid image reference;",
        ),
        ("create web --image=-nginx", "`-nginx` is not a valid image reference;"),
        ("create web --image=" + "a" * 513, "the image reference is too long (the limit is 512)."),
        ("create web --image=" + "a" * 256, "the image name is too long (the limit is 255)."),
        # set image pairs
        ("set image web nginx:1.2", "expected `CONTAINER=IMAGE`, got `nginx:1.2`."),
        ("set image web app=", "container `app` needs an image after `=`."),
        (
            "set image web =nginx",
            "`` is not a valid container name: use at most 63 lowercase letters, digits and `-`, "
            "or `*` for every container.",
        ),
        ("set image web App=nginx", "`App` is not a valid container name:"),
        (
            "set image web *=nginx app=nginx:2",
            "all containers are already specified by *, but saw more than one "
            "container_name=container_image pairs",
        ),
        # reasons
        ("restart web --reason='  '", "`--reason` needs some text."),
        (
            "restart web --reason=" + "x" * 301,
            "`--reason` is too long (301 characters; the limit is 300).",
        ),
        ("restart web --reason=a\x00b", "`--reason` must not contain control characters."),
        ("restart web --reason=a\x1bb", "`--reason` must not contain control characters."),
        ("restart web --reason=a\u202eb", "`--reason` must not contain control characters."),
        # quoting
        (
            'scale "api 3',
            "a quote is not closed: every `\"` and `'` needs a partner (put text with an "
            'apostrophe in double quotes, like `--reason="don\'t"`).',
        ),
        ("scale web --replicas=1 --reason=don't", "a quote is not closed:"),
        ("scale web --replicas=1 --reason=“oops", "a quote is not closed:"),
        ("status web\\", "the text ends with a lone `\\`."),
    ],
)
def test_refusals_say_exactly_what_is_wrong(text: str, message: str) -> None:
    assert error_of(text).message.startswith(message)


@pytest.mark.parametrize(
    ("text", "usage"),
    [
        ("scale web", USAGE["scale"]),
        ('scale "api 3', USAGE["scale"]),
        ("set image web", USAGE["set image"]),
        ("SET web", USAGE["set image"]),
        ('set "image', USAGE["set image"]),
        ("status web --bogus", USAGE["status"]),
        ("help scale undo", USAGE["help"]),
        ("rollback web", GRAMMAR),
        ("help frobnicate", GRAMMAR),
        ('"unclosed', GRAMMAR),
        ("x" * (MAX_TEXT_LENGTH + 1), GRAMMAR),
    ],
)
def test_refusals_carry_the_usage_of_the_verb_or_the_whole_grammar(text: str, usage: str) -> None:
    assert error_of(text).usage == usage


def test_overlong_text_is_refused_before_any_work() -> None:
    error = error_of("status " + "a" * MAX_TEXT_LENGTH)
    assert error.message == "the command is too long (4007 characters; the limit is 4000)."


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("status &lt;!channel&gt;", "&lt;!channel&gt;"),
        ("status a&amp;b", "a&amp;b"),
        ("status a`b", "a'b"),
        ("status a\u202eb", "a\ufffdb"),
        ("status a\x07b", "a\ufffdb"),
    ],
)
def test_user_input_quoted_in_a_refusal_is_made_safe_for_slack(text: str, shown: str) -> None:
    assert error_of(text).message.startswith(f"`{shown}` is not a valid deployment name")


def test_a_refusal_is_an_exception_whose_text_is_the_message() -> None:
    error = error_of("scale web")
    assert str(error) == error.message


def test_negative_max_replicas_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        parse_command("list", max_replicas=-1)


# --- properties ------------------------------------------------------------------------------


def parses_or_refuses(text: str) -> None:
    try:
        command = parse_command(text)
    except CommandError as error:
        assert error.message
        assert error.usage
    else:
        assert isinstance(command, CommandBase)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
@example("\ud800")
@example('"')
@example("\\")
@example("set image web a=b=c")
@example("<" * 50)
def test_any_text_is_a_command_or_a_refusal(text: str) -> None:
    parses_or_refuses(text)


TOKENS = st.sampled_from(
    [
        *VERBS,
        "set",
        "image",
        "web",
        "deploy/web",
        "sts/web",
        "ds/web",
        "statefulset.apps/web",
        "Web",
        "-n",
        "-n=prod",
        "--namespace",
        "prod",
        "--replicas",
        "--replicas=3",
        "—replicas=3",
        "–n",
        "--image",
        "--image=nginx:1.27",
        "nginx:1.27",
        "app=nginx:1.27",
        "*=nginx",
        "--revision=2",
        "--to-revision=0",
        "--limit=5",
        "--reason",
        '--reason="a b"',
        "“fixes bug”",
        "‘x’",
        "don’t",
        "'",
        '"',
        "\\",
        "0",
        "1",
        "2",
        "-1",
        "３",
        "<@U1|bob>",
        "&amp;",
        "<http://a.io|a.io>",
        "",
        "\u00a0",
        "\x00",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(TOKENS, st.text(max_size=8)), max_size=10))
def test_any_mix_of_grammar_tokens_is_a_command_or_a_refusal(tokens: list[str]) -> None:
    parses_or_refuses(" ".join(tokens))


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=40), st.integers(MAX_TEXT_LENGTH - 100, MAX_TEXT_LENGTH))
def test_long_text_is_a_command_or_a_refusal(unit: str, length: int) -> None:
    parses_or_refuses((unit * length)[:length])


@pytest.mark.parametrize(
    "text",
    [
        "set image web a=" + "a-" * 1990 + "!",
        "set image web a=" + ("a" * 60 + ".") * 60,
        "status " + "a-" * 1995 + "!",
        "<" * 2000 + ">" * 1999,
        '"' * MAX_TEXT_LENGTH,
        "—" * MAX_TEXT_LENGTH,
    ],
)
def test_hostile_text_is_answered_quickly(text: str) -> None:
    started = time.perf_counter()
    parses_or_refuses(text)
    assert time.perf_counter() - started < 0.5


LABELS = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,12}[a-z0-9])?", fullmatch=True)
NAMESPACES = st.none() | LABELS
DEPLOYMENTS = st.lists(LABELS, min_size=1, max_size=3).map(".".join)
_PATH = st.from_regex(r"[a-z0-9]{1,6}((\.|_|__|-{1,2})[a-z0-9]{1,6}){0,2}", fullmatch=True)
_DOMAIN = st.from_regex(r"([a-zA-Z0-9]{1,8}\.){0,3}[a-zA-Z0-9]{1,8}(:[0-9]{1,5})?/", fullmatch=True)
_TAG = st.from_regex(r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_DIGEST = st.from_regex(r"@sha256:[0-9a-f]{64}", fullmatch=True)
IMAGES = st.builds(
    lambda domain, path, tag, digest: domain + "/".join(path) + tag + digest,
    st.just("") | _DOMAIN,
    st.lists(_PATH, min_size=1, max_size=3),
    st.just("") | _TAG,
    st.just("") | _DIGEST,
)
_SMART_QUOTES = set("\u201c\u201d\u201e\u201f\u2018\u2019\u201a\u201b")
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def is_parsed_reason(text: str) -> bool:
    """A reason as the parser hands it out: trimmed, one line, no invisible tricks."""
    return (
        bool(text)
        and text == text.strip(" ")
        and all(
            not (char.isspace() and char != " ")
            and unicodedata.category(char) not in ("Cc", "Cs")
            and char not in _SMART_QUOTES | _BIDI | {"\u200b", "\u2060", "\ufeff"}
            for char in text
        )
    )


REASONS = st.none() | st.one_of(
    st.text(min_size=1, max_size=300),
    st.text(alphabet="ab '\"\\&<>|$;=-—–@#!*`", min_size=1, max_size=40),
    st.sampled_from(["&amp;", "&lt;x&gt;", "<@U1|bob>", "--reason=x", "-n prod", "'", '"']),
).filter(is_parsed_reason)
REVISIONS = st.integers(min_value=1, max_value=2**63 - 1)
KINDS = st.sampled_from(["deployment", "statefulset", "daemonset"])
CONTAINERS = st.lists(st.tuples(LABELS, IMAGES), min_size=1, max_size=4, unique_by=lambda p: p[0])

COMMANDS: st.SearchStrategy[Command] = st.one_of(
    st.builds(Help, verb=st.none() | st.sampled_from(VERBS)),
    st.builds(ListDeployments, namespace=NAMESPACES),
    st.builds(Status, name=DEPLOYMENTS, kind=KINDS, namespace=NAMESPACES),
    st.builds(
        Create,
        name=DEPLOYMENTS,
        image=IMAGES,
        replicas=st.integers(0, 100),
        namespace=NAMESPACES,
    ),
    st.builds(
        SetImage,
        name=DEPLOYMENTS,
        kind=KINDS,
        images=CONTAINERS.map(tuple) | IMAGES.map(lambda image: (("*", image),)),
        namespace=NAMESPACES,
        reason=REASONS,
    ),
    st.builds(
        Scale,
        name=DEPLOYMENTS,
        kind=KINDS,
        replicas=st.integers(0, 100),
        namespace=NAMESPACES,
        reason=REASONS,
    ),
    st.builds(
        History,
        name=DEPLOYMENTS,
        kind=KINDS,
        revision=st.none() | REVISIONS,
        namespace=NAMESPACES,
    ),
    st.builds(
        Diff,
        name=DEPLOYMENTS,
        kind=KINDS,
        rev=REVISIONS,
        rev2=st.none() | REVISIONS,
        namespace=NAMESPACES,
    ).filter(lambda diff: diff.rev != diff.rev2),
    st.builds(
        Undo,
        name=DEPLOYMENTS,
        kind=KINDS,
        to_revision=st.none() | REVISIONS,
        namespace=NAMESPACES,
        reason=REASONS,
    ),
    st.builds(Pause, name=DEPLOYMENTS, kind=KINDS, namespace=NAMESPACES),
    st.builds(Resume, name=DEPLOYMENTS, kind=KINDS, namespace=NAMESPACES),
    st.builds(Restart, name=DEPLOYMENTS, kind=KINDS, namespace=NAMESPACES, reason=REASONS),
    st.builds(Approvals, namespace=NAMESPACES),
    st.builds(
        Audit,
        name=st.none() | DEPLOYMENTS,
        namespace=NAMESPACES,
        limit=st.integers(1, 500),
    ),
)


@settings(max_examples=1000, deadline=None)
@given(COMMANDS)
@example(Restart(name="web", reason="don’t & <@U1> 'x' \"y\" \\z"))
@example(SetImage(name="web", images=(("*", f"localhost:5000/a/b:c@{DIGEST}"),)))
def test_a_rendered_command_parses_back_to_itself(command: Command) -> None:
    assert parse_command(render_command(command)) == command


def test_rendering_is_canonical() -> None:
    assert (
        render_command(
            parse_command("scale deployment/web —n prod —reason “fixes bug” --replicas 3")
        )
        == "scale web --replicas=3 -n prod --reason='fixes bug'"
    )
    assert render_command(Undo(name="web", reason="a & b")) == ("undo web --reason='a &amp; b'")


# --- promote -----------------------------------------------------------------------------------


def test_promote_takes_a_pipeline_named_images_and_switches() -> None:
    from bot.domain.verbs import Promote, Promotions

    assert parse_command("promote web") == Promote(pipeline="web")
    both = parse_command("promote web --image app=r/app:2 --image side=s:1 --dry-run")
    assert both == Promote(
        pipeline="web", images=(("app", "r/app:2"), ("side", "s:1")), dry_run=True
    )
    assert parse_command(render_command(both)) == both
    assert parse_command("promote web --resume") == Promote(pipeline="web", resume=True)
    assert parse_command("promotions") == Promotions()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("promote", "needs the name of a pipeline"),
        ("promote Web_1", "is not a pipeline name"),
        ("promote web --resume=yes", "`--resume` takes no value"),
        ("promote web --image *=x:1", "`*` is not one"),
        ("promote web --image app=x:1 --image app=x:2", "same container more than once"),
        ("promote web --resume --image app=x:1", "drop `--image`"),
        ("promote web -n prod", "does not take `-n`"),
        ("create web --image=a:1 --image=b:1", "given more than once"),
    ],
)
def test_promote_refuses_what_it_cannot_mean(text: str, says: str) -> None:
    assert says in error_of(text).message


def test_a_record_written_before_the_rename_still_reads_with_its_deployment_field() -> None:
    """Redis holds pending approvals across an upgrade: their records say `deployment`."""
    from bot.domain.verbs import command_record, from_record

    stored = {"verb": "undo", "fields": {"deployment": "db", "kind": "statefulset"}}
    command = from_record(stored)
    assert command == Undo(name="db", kind="statefulset")
    assert command_record(command)["fields"]["name"] == "db"
