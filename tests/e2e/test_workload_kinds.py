"""The walkthrough for StatefulSets and DaemonSets, through the real bot, checked with kubectl.

kubectl creates them (the bot's `create` makes Deployments only); after each step the bot's
answer is compared with what `kubectl rollout history|status` says about the same object.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_POLICY
from tests.devkit.slack.web_api import SlackStandin
from tests.integration.test_progress import FAST, announcement, wait_for_verdict
from tests.support.bot_process import SlackDriver, message_text
from tests.support.kubectl import Kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


def manifest(kind: str, name: str, image: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": image}]},
        },
        **spec,
    }
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": body}


def oracle(kubectl: Kubectl, *args: str) -> str:
    """kubectl's own text (stdout, else its error without the `error: ` prefix)."""
    proc = kubectl.run(*args, check=False)
    if proc.returncode == 0:
        return proc.stdout.strip()
    return proc.stderr.strip().removeprefix("error: ")


def history_numbers(kubectl: Kubectl, ref: str) -> list[int]:
    out = kubectl.run("rollout", "history", ref).stdout
    return [int(line.split()[0]) for line in out.splitlines() if line[:1].isdigit()]


def history_causes(kubectl: Kubectl, ref: str) -> dict[int, str]:
    out = kubectl.run("rollout", "history", ref).stdout
    table = {}
    for line in out.splitlines():
        parts = line.split(maxsplit=1)
        if parts and parts[0].isdigit():
            table[int(parts[0])] = parts[1].strip() if len(parts) > 1 else ""
    return table


def bot_revisions(text: str) -> list[int]:
    """Revision numbers from the bot's history table (`3 *` marks the current one)."""
    return [int(m) for m in re.findall(r"^(\d+)(?: \*)?\s{2,}", text, flags=re.MULTILINE)]


def plain(text: str) -> str:
    return html.unescape(text)


def status_sentence(kubectl: Kubectl, ref: str) -> str:
    """The last line kubectl rollout status prints once it is done waiting."""
    proc = kubectl.run("rollout", "status", ref, "--timeout=90s", check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("kind", "short", "word"),
    [("StatefulSet", "sts", "statefulset"), ("DaemonSet", "ds", "daemonset")],
)
def test_walkthrough(
    kind: str,
    short: str,
    word: str,
    start_bot: Any,
    slack: SlackStandin,
    kubectl: Kubectl,
    granted_namespace: str,
) -> None:
    ns = granted_namespace
    driver = SlackDriver(slack, start_bot(env=FAST))
    ref = f"{word}/web"
    target = f"{short}/web"
    kubectl.apply(manifest(kind, "web", "app:1", **({"replicas": 2} if short == "sts" else {})))
    assert kubectl.run("rollout", "status", ref, "--timeout=90s", check=False).returncode == 0

    # list: every kind, with its KIND column.
    listed = driver.ask(f"list -n {ns}")
    assert kind in listed and "web" in listed

    # scale where kubectl can.
    said = driver.run(f"scale {target} --replicas=3 -n {ns} --reason=load")
    if short == "sts":
        assert f"{word}.apps/web scaled" in said and "replicas: 2 → 3" in said
        assert "readyReplicas" in kubectl.get(ref)["status"]
        status_sentence(kubectl, ref)
        assert kubectl.get(ref)["status"]["readyReplicas"] == 3
        # scale is not a template change: no change-cause written.
        annotations = kubectl.get(ref)["metadata"].get("annotations") or {}
        assert "kubernetes.io/change-cause" not in annotations
    else:
        assert "the server could not find the requested resource" in plain(said)

    # set image: a new revision whose change-cause kubectl shows.
    said = driver.run(f"set image {target} app=app:2 -n {ns} --reason=“fixes CVE”")
    assert f"{word}.apps/web image updated" in said and "app:1 → app:2" in said
    done = status_sentence(kubectl, ref)
    assert history_numbers(kubectl, ref) == [1, 2]
    causes = history_causes(kubectl, ref)
    assert causes[2] == "set image app=app:2 by @alice via Slack: fixes CVE"
    history = plain(driver.ask(f"history {target} -n {ns}"))
    assert bot_revisions(history) == [1, 2]
    for cause in causes.values():
        assert cause in history

    # The progress message ends with kubectl's verdict for this kind.
    head = announcement(slack, "C0DEPLOYS", "image updated")
    final = wait_for_verdict(driver, "C0DEPLOYS", head.ts, "succeeded")
    assert done in plain(str(final.as_api_dict()))

    # history --revision=N: kubectl's pod template text.
    detail = plain(driver.ask(f"history {target} --revision=1 -n {ns}"))
    described = kubectl.run("rollout", "history", ref, "--revision=1").stdout
    assert f"{word}.apps/web with revision #1" in described
    for line in described.splitlines()[1:]:
        if line.strip():
            assert line.rstrip() in detail, f"missing from the bot's --revision=1: {line!r}"
    missing = plain(driver.ask(f"history {target} --revision=9 -n {ns}"))
    assert "unable to find the specified revision" in missing

    # diff between revisions.
    diff = plain(driver.ask(f"diff {target} 1 -n {ns}"))
    assert "-" in diff and "image: app:1" in diff and "image: app:2" in diff

    # undo to revision 1, and the renumbering kubectl shows (1 becomes 3).
    said = driver.run(f"undo {target} --to-revision=1 -n {ns}")
    assert f"{word}.apps/web rolled back" in said
    status_sentence(kubectl, ref)
    assert history_numbers(kubectl, ref) == [2, 3]
    history = plain(driver.ask(f"history {target} -n {ns}"))
    assert bot_revisions(history) == [2, 3]
    images = kubectl.get(ref)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert images == "app:1"

    # undo to the revision that is already live: kubectl's skip message, nothing sent.
    said = plain(driver.run(f"undo {target} --to-revision=3 -n {ns}"))
    assert "skipped rollback (current template already matches revision 3)" in said
    assert history_numbers(kubectl, ref) == [2, 3]
    # unknown revision: kubectl's error.
    said = plain(driver.run(f"undo {target} --to-revision=7 -n {ns}"))
    # kubectl's error (its last line: an applied object's warning comes first).
    error = oracle(kubectl, "rollout", "undo", ref, "--to-revision=7").splitlines()[-1]
    assert error.removeprefix("error: ") in said

    # restart: the restartedAt annotation, a new revision.
    said = driver.run(f"restart {target} -n {ns}")
    assert f"{word}.apps/web restarted" in said
    status_sentence(kubectl, ref)
    template = kubectl.get(ref)["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]
    assert history_numbers(kubectl, ref) == [2, 3, 4]

    # pause and resume: kubectl's refusals, word for word.
    for verb in ("pause", "resume"):
        said = plain(driver.run(f"{verb} {target} -n {ns}"))
        expected = oracle(kubectl, "rollout", verb, ref)
        assert "is not supported" in expected and expected in said

    # status agrees with kubectl's.
    status = plain(driver.ask(f"status {target} -n {ns}"))
    assert status_sentence(kubectl, ref) in status

    # a broken image: the progress message ends failed, naming ImagePullBackOff; kubectl's
    # status is still waiting, and the bot's status says the same sentence kubectl prints.
    before = len(slack.messages("C0DEPLOYS"))
    said = driver.run(f"set image {target} app=app:broken-1 -n {ns}")
    assert "image updated" in said
    head = next(m for m in slack.messages("C0DEPLOYS")[before:] if m.thread_ts is None)
    failed = plain(str(wait_for_verdict(driver, "C0DEPLOYS", head.ts, "failed").as_api_dict()))
    assert "ImagePullBackOff" in failed
    waiting = kubectl.run("rollout", "status", ref, "--timeout=2s", check=False)
    assert waiting.returncode != 0
    last = waiting.stdout.strip().splitlines()[-1]
    assert last.startswith("Waiting for")
    status = plain(driver.ask(f"status {target} -n {ns}"))
    assert last in status
    # The failed rollout's Roll back button carries the kind.
    assert f"{ns}/{word}/web" in str(
        wait_for_verdict(driver, "C0DEPLOYS", head.ts, "failed").as_api_dict()
    )


def test_status_needs_the_rolling_update_strategy(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    driver = SlackDriver(slack, start_bot())
    kubectl.apply(
        manifest("StatefulSet", "db", "db:1", replicas=1, updateStrategy={"type": "OnDelete"})
    )
    kubectl.apply(manifest("DaemonSet", "agent", "agent:1", updateStrategy={"type": "OnDelete"}))
    for ref, target in (("statefulset/db", "sts/db"), ("daemonset/agent", "ds/agent")):
        expected = oracle(kubectl, "rollout", "status", ref)
        assert expected == "rollout status is only available for RollingUpdate strategy type"
        assert expected in plain(driver.ask(f"status {target} -n {ns}"))


def test_partitioned_statefulset_status_is_kubectls(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    ns = granted_namespace
    driver = SlackDriver(slack, start_bot())
    kubectl.apply(
        manifest(
            "StatefulSet",
            "db",
            "db:1",
            replicas=3,
            updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
        )
    )
    status_sentence(kubectl, "statefulset/db")
    said = driver.run(f"set image sts/db app=db:2 -n {ns}")
    assert "image updated" in said
    sentence = status_sentence(kubectl, "statefulset/db")
    assert sentence == "partitioned roll out complete: 1 new pods have been updated..."
    assert sentence in plain(driver.ask(f"status sts/db -n {ns}"))


def test_history_of_an_object_without_revisions(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    """A Deployment scaled to nothing and never rolled out has no ReplicaSet yet? It always has
    one; an object whose ControllerRevisions were removed has none: kubectl says so."""
    ns = granted_namespace
    driver = SlackDriver(slack, start_bot())
    kubectl.apply(manifest("DaemonSet", "agent", "agent:1"))
    status_sentence(kubectl, "daemonset/agent")
    kubectl.run("delete", "controllerrevisions", "--all")
    # The controller recreates the current one; wait until kubectl and the bot agree.
    expected = oracle(kubectl, "rollout", "history", "daemonset/agent")
    answer = plain(driver.ask(f"history ds/agent -n {ns}"))
    if "No rollout history found." in expected:
        assert "No rollout history found." in answer
    else:
        assert bot_revisions(answer) == history_numbers(kubectl, "daemonset/agent")


@pytest.mark.parametrize(
    ("kind", "word"), [("StatefulSet", "statefulset"), ("DaemonSet", "daemonset")]
)
def test_outside_change_gets_one_notice_and_is_followed(
    kind: str,
    word: str,
    start_bot: Any,
    slack: SlackStandin,
    kubectl: Kubectl,
    granted_namespace: str,
    tmp_path: Path,
) -> None:
    ns = granted_namespace
    policy = tmp_path / "bound.yaml"
    policy.write_text(
        # The channel asks to follow outside rollouts, so the notice gets a progress message.
        TEST_POLICY.replace(
            "C0DEPLOYS: {namespace: default}",
            f"C0OPS: {{namespace: {ns}, follow_outside: true}}",
        )
    )
    kubectl.apply(
        manifest(kind, "web", "app:1", **({"replicas": 2} if word == "statefulset" else {}))
    )
    status_sentence(kubectl, f"{word}/web")
    driver = SlackDriver(slack, start_bot(policy=policy, env=FAST), channel="C0OPS")
    kubectl.run("set", "image", f"{word}/web", "app=app:9")

    def notices() -> list[Any]:
        return [
            m
            for m in slack.messages("C0OPS")
            if m.thread_ts is None and "from outside the bot" in m.text
        ]

    notice = driver.wait(notices, 60, what="a notice")[0]
    text = plain(message_text(notice.as_api_dict()))
    assert f"{ns}/{word}/web" in text and "revision *2*" in text
    assert "app:1" in text and "app:9" in text and "kubectl-set" in text
    final = wait_for_verdict(driver, "C0OPS", notice.ts, "succeeded")
    assert status_sentence(kubectl, f"{word}/web") in plain(str(final.as_api_dict()))
    assert len(notices()) == 1


def test_on_failure_rollback_undoes_a_failed_statefulset_rollout(
    start_bot: Any,
    slack: SlackStandin,
    kubectl: Kubectl,
    granted_namespace: str,
    tmp_path: Path,
) -> None:
    ns = granted_namespace
    policy = tmp_path / "rollback.yaml"
    policy.write_text(
        TEST_POLICY
        + f"  - namespaces: [{ns}]\n"
        + "    actions: [set-image]\n"
        + "    required: 1\n"
        + "    approvers: [U0BOB]\n"
        + "    on_failure: rollback\n"
    )
    driver = SlackDriver(slack, start_bot(policy=policy, env=FAST))
    kubectl.apply(manifest("StatefulSet", "db", "db:1", replicas=2))
    status_sentence(kubectl, "statefulset/db")
    said = driver.run(f"set image sts/db app=db:broken-1 -n {ns}")
    request = re.search(r"request `([A-Za-z0-9_-]+)`", said)
    assert request, said
    head = announcement(slack, "C0DEPLOYS", "wants to run")
    driver.click("rollout_approve", request.group(1), user="U0BOB", name="bob", message_ts=head.ts)
    failed = plain(str(wait_for_verdict(driver, "C0DEPLOYS", head.ts, "failed").as_api_dict()))
    assert "ImagePullBackOff" in failed
    assert "delete that pod" in failed  # Kubernetes' forced rollback, said where it matters
    # The bot undoes it as kubectl's StatefulSetRollbacker would: back to revision 1's
    # template, which the controller renumbers 3.
    kubectl.wait_for(
        lambda: (
            kubectl.get("statefulset/db")["spec"]["template"]["spec"]["containers"][0]["image"]
            == "db:1"
        ),
        what="the automatic rollback",
    )
    assert history_numbers(kubectl, "statefulset/db") == [2, 3]
