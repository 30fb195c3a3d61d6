"""The Helm chart, rendered by a real helm and applied to the real local control plane.

Without a cluster: lint, the schema refuses bad values, every value set renders, and the plain
manifests equal `helm template`. With the cluster (marked `cluster`): each value set is applied
server-side into a namespace enforcing Pod Security "restricted", its pods are admitted, the
ServiceAccount can do exactly what the code calls, and a real bot using that ServiceAccount's
token runs a walkthrough.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.helm import (
    CHART,
    MANIFESTS,
    documents,
    helm,
    helm_with_env,
    of_kind,
    render,
    template,
)
from tests.devkit.control_plane import ClusterInfo
from tests.devkit.slack.web_api import SlackStandin
from tests.support.api_calls import api_calls_with_groups
from tests.support.bot_process import SlackDriver
from tests.support.kubectl import Kubectl, deployment_manifest

VALUE_SETS: dict[str, list[str]] = {
    "socket": [],
    "http": [
        "slack.mode=http",
        "ingress.enabled=true",
        "networkPolicy.enabled=true",
    ],
    "external-redis": [
        "redis.enabled=false",
        "externalRedis.url=rediss://:pw@redis.example.com:6380/0",
        "networkPolicy.enabled=true",
    ],
    "cluster-wide": ["rbac.namespaces={*}", "replicaCount=3"],
    "sentinel": ["redis.replicas=2", "networkPolicy.enabled=true"],
    "external-sentinel": [
        "redis.enabled=false",
        "externalRedis.sentinels={s0.redis:26379,s1.redis:26379,s2.redis:26379}",
        "externalRedis.sentinelMaster=mymaster",
        "networkPolicy.enabled=true",
    ],
    "several-clusters": [
        "clusters.kubeconfigSecret=rollout-bot-clusters",
        "clusters.kubeconfigKeys={east.kubeconfig,west.kubeconfig}",
        "clusters.contexts={default,east,west}",
    ],
}

# (verb, resource) the cluster adapter calls; see tests/unit/test_deploy_files.py, which
# derives the same set from the source.
# Exactly the calls the cluster adapter makes, read from its source.
NEEDED = api_calls_with_groups()


# -- without a cluster ------------------------------------------------------------------------


def test_the_chart_lints_clean() -> None:
    out = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_value_set_renders(name: str) -> None:
    text = render(*VALUE_SETS[name])
    kinds = {d["kind"] for d in documents(text)}
    assert {"Deployment", "ServiceAccount", "Service"} <= kinds
    (deployment,) = of_kind(text, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["containers"] + pod["initContainers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
        assert context["capabilities"] == {"drop": ["ALL"]}
    (bot,) = pod["containers"]
    assert not bot["image"].endswith(":latest")
    mounts = {m["mountPath"] for m in bot["volumeMounts"]}
    assert "/tmp" in mounts
    env = {e["name"]: e.get("value") for e in bot["env"]}
    assert env["ROLLOUT_BOT_SECRETS_DIR"] in mounts
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert bot[probe]["httpGet"]["port"] in {p["name"] for p in bot["ports"]}
    # No secret value is ever in the environment.
    assert not [e for e in bot["env"] if "valueFrom" in e]
    assert ("StatefulSet" in kinds) == ("redis.enabled=false" not in VALUE_SETS[name])


def test_http_mode_serves_slack_through_the_ingress_only_on_slack_events() -> None:
    text = render(*VALUE_SETS["http"])
    (deployment,) = of_kind(text, "Deployment")
    (bot,) = deployment["spec"]["template"]["spec"]["containers"]
    assert bot["args"] == ["serve", "--http", "--port", "3000"]
    (ingress,) = of_kind(text, "Ingress")
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/slack/events", "Exact")]
    policies = {p["metadata"]["name"]: p for p in of_kind(text, "NetworkPolicy")}
    egress_ports = {
        port["port"] for rule in policies["rollout-bot"]["spec"]["egress"] for port in rule["ports"]
    }
    assert {53, 443, 6379} <= egress_ports
    assert policies["rollout-bot-redis"]["spec"]["egress"] == []


def test_rbac_is_namespaced_or_cluster_wide_and_has_no_unused_verbs() -> None:
    namespaced = render("rbac.namespaces={team-a,team-b}")
    assert {r["metadata"]["namespace"] for r in of_kind(namespaced, "Role")} == {
        "team-a",
        "team-b",
    }
    assert not of_kind(namespaced, "ClusterRole")
    wide = render("rbac.namespaces={*}")
    assert not of_kind(wide, "Role") and len(of_kind(wide, "ClusterRoleBinding")) == 1
    for text in (namespaced, wide):
        for role in of_kind(text, "Role") + of_kind(text, "ClusterRole"):
            granted = {
                (verb, r + "".join(f".{g}" for g in rule["apiGroups"] if g))
                for rule in role["rules"]
                for r in rule["resources"]
                for verb in rule["verbs"]
            }
            assert granted == NEEDED


def test_secrets_come_from_a_secret_made_by_the_user_or_from_values() -> None:
    assert not of_kind(render(), "Secret"), "no values: the user's Secret is used"
    created = render(
        "secrets.create=true",
        "secrets.slackBotToken=xoxb-1-2",
        "secrets.redisPassword=abc123",
        f"secrets.stateKey={'k' * 40}",
    )
    (secret,) = of_kind(created, "Secret")
    assert secret["stringData"]["SLACK_BOT_TOKEN"] == "xoxb-1-2"
    assert secret["stringData"]["REDIS_PASSWORD"] == "abc123"
    external = render("redis.enabled=false", "externalRedis.url=redis://:pw@r:6379/0")
    (url_secret,) = of_kind(external, "Secret")
    assert url_secret["stringData"] == {"REDIS_URL": "redis://:pw@r:6379/0"}


CREATED_SECRET = ["secrets.create=true", "secrets.slackBotToken=xoxb-1-2"]


def test_a_render_without_the_cluster_never_generates_the_state_key_or_the_redis_password() -> None:
    """`helm template` and Argo CD cannot see the installed Secret: a generated state key would
    change on every render (voiding every pending approval) and a generated Redis password would
    change under a Redis that keeps the old one. Such a render is refused, naming the value."""
    no_key = template(*CREATED_SECRET, "secrets.redisPassword=abc123", check=False)
    assert no_key.returncode != 0 and "secrets.stateKey" in no_key.stderr, no_key.stdout[:300]
    no_password = template(*CREATED_SECRET, f"secrets.stateKey={'k' * 40}", check=False)
    assert no_password.returncode != 0 and "secrets.redisPassword" in no_password.stderr
    # Given both, every render is the same: the Secret, and the pods' checksum of it.
    given = [*CREATED_SECRET, "secrets.redisPassword=abc123", f"secrets.stateKey={'k' * 40}"]
    first, second = render(*given), render(*given)
    assert first == second
    (secret,) = of_kind(first, "Secret")
    assert secret["stringData"]["ROLLOUT_BOT_STATE_KEY"] == "k" * 40
    assert secret["stringData"]["REDIS_PASSWORD"] == "abc123"


def test_the_bot_and_redis_read_the_password_from_the_same_secret() -> None:
    for sets in (
        [],
        [*CREATED_SECRET, "secrets.redisPassword=abc123", "secrets.stateKey=" + "k" * 40],
    ):
        text = render(*sets)
        (statefulset,) = of_kind(text, "StatefulSet")
        (deployment,) = of_kind(text, "Deployment")
        redis_volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
        bot_volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        redis_secret = redis_volumes["password"]["secret"]
        assert redis_secret["items"] == [{"key": "REDIS_PASSWORD", "path": "REDIS_PASSWORD"}]
        assert bot_volumes["secret-in"]["secret"]["secretName"] == redis_secret["secretName"]


def test_bundled_redis_with_replicas_runs_sentinel_beside_it_under_the_same_pod_security() -> None:
    text = render(*VALUE_SETS["sentinel"])
    sets = {s["metadata"]["name"]: s for s in of_kind(text, "StatefulSet")}
    redis_set, sentinel_set = sets["rollout-bot-redis"], sets["rollout-bot-sentinel"]
    assert redis_set["spec"]["replicas"] == 3  # the primary and two replicas
    assert sentinel_set["spec"]["replicas"] == 3
    for workload in (redis_set, sentinel_set):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(container)
        assert "REDISCLI_AUTH" in container["readinessProbe"]["exec"]["command"][2]
    services = {s["metadata"]["name"]: s for s in of_kind(text, "Service")}
    # Headless: the pods are addressed one by one; Sentinel says which is the primary.
    assert services["rollout-bot-redis"]["spec"]["clusterIP"] == "None"
    assert services["rollout-bot-sentinel"]["spec"]["clusterIP"] == "None"
    (config,) = [c for c in of_kind(text, "ConfigMap") if "redis.conf" in c["data"]]
    assert "sentinel monitor rollout-bot $primary 6379 2" in config["data"]["sentinel.sh"]
    assert 'masterauth "$password"' in config["data"]["start.sh"]

    (deployment,) = of_kind(text, "Deployment")
    (bot,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in bot["env"]}
    assert env["REDIS_SENTINELS"] == ",".join(
        f"rollout-bot-sentinel-{i}.rollout-bot-sentinel.rollout-bot.svc:26379" for i in range(3)
    )
    assert env["REDIS_SENTINEL_MASTER"] == "rollout-bot"
    policies = {p["metadata"]["name"]: p for p in of_kind(text, "NetworkPolicy")}
    bot_ports = {p["port"] for r in policies["rollout-bot"]["spec"]["egress"] for p in r["ports"]}
    assert {6379, 26379} <= bot_ports
    assert "rollout-bot-sentinel" in policies


def test_an_external_redis_behind_sentinel_is_found_through_its_sentinels() -> None:
    (deployment,) = of_kind(render(*VALUE_SETS["external-sentinel"]), "Deployment")
    (bot,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in bot["env"]}
    assert env["REDIS_SENTINELS"] == "s0.redis:26379,s1.redis:26379,s2.redis:26379"
    assert env["REDIS_SENTINEL_MASTER"] == "mymaster"
    assert "ROLLOUT_BOT_REDIS_MIN_REPLICAS" not in env  # the bot's default: 1 with Sentinel
    pinned = render(*VALUE_SETS["external-sentinel"], "redis.minReplicas=2")
    (deployment,) = of_kind(pinned, "Deployment")
    (bot,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "ROLLOUT_BOT_REDIS_MIN_REPLICAS", "value": "2"} in bot["env"]


def test_the_init_container_gives_the_bundled_sentinels_password_and_needs_no_url_for_external(
    tmp_path: Path,
) -> None:
    script, env = _init_container("redis.replicas=1")
    _secret_volume(tmp_path / "in" / "main", {"SLACK_BOT_TOKEN": "xoxb-1", "REDIS_PASSWORD": "pw"})
    assert _run_init(script, env, tmp_path).returncode == 0
    assert (tmp_path / "out" / "REDIS_SENTINEL_PASSWORD").read_text() == "pw"

    script, env = _init_container(*VALUE_SETS["external-sentinel"])
    _secret_volume(tmp_path / "ext" / "in" / "main", {"SLACK_BOT_TOKEN": "xoxb-1"})
    done = _run_init(script, env, tmp_path / "ext")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "sets, complaint",
    [
        (["slack.mode=smtp"], "/slack/mode"),
        (
            ["redis.enabled=false", "externalRedis.sentinels={s:26379}"],
            "externalRedis.sentinelMaster",
        ),
        (
            ["redis.enabled=false", "externalRedis.sentinels={no-port}"],
            "/externalRedis/sentinels/0",
        ),
        (["redis.replicas=-1"], "/redis/replicas"),
        (["rbac.namespaces={Bad_NS}"], "/rbac/namespaces/0"),
        (["externalRedis.url=http://x"], "/externalRedis/url"),
        (["secrets.create=true"], "secrets.slackBotToken"),
        (["unknownValue=1"], "unknownValue"),
        (["clusters.kubeconfigSecret=k"], "clusters.kubeconfigKeys"),
        (["clusters.kubeconfigKeys={east.kubeconfig}"], "clusters.kubeconfigSecret"),
        (["clusters.kubeconfigKeys={../etc/passwd}"], "/clusters/kubeconfigKeys/0"),
        (["clusters.contexts={east west}"], "/clusters/contexts/0"),
    ],
)
def test_bad_values_are_refused_with_the_name_of_the_value(sets: list[str], complaint: str) -> None:
    out = template(*sets, check=False)
    assert out.returncode != 0, out.stdout[:500]
    assert complaint in out.stderr, out.stderr


def test_other_clusters_come_from_a_mounted_kubeconfig_secret() -> None:
    (deployment,) = of_kind(render(*VALUE_SETS["several-clusters"]), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (bot,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in bot["env"]}
    assert env["KUBECONFIG"] == (
        "/etc/rollout-bot/kubeconfigs/east.kubeconfig:/etc/rollout-bot/kubeconfigs/west.kubeconfig"
    )
    assert env["ROLLOUT_BOT_CONTEXTS"] == "default,east,west"
    assert env["ROLLOUT_BOT_CLUSTER_NAME"] == "default"  # the bot's own cluster, by that name
    (mount,) = [m for m in bot["volumeMounts"] if m["name"] == "kubeconfigs"]
    assert mount == {
        "name": "kubeconfigs",
        "mountPath": "/etc/rollout-bot/kubeconfigs",
        "readOnly": True,
    }
    (volume,) = [v for v in pod["volumes"] if v["name"] == "kubeconfigs"]
    assert volume["secret"] == {"secretName": "rollout-bot-clusters", "defaultMode": 0o440}
    # Without the values nothing of it is there: one cluster, as before.
    (plain,) = of_kind(render(), "Deployment")
    (plain_bot,) = plain["spec"]["template"]["spec"]["containers"]
    names = {e["name"] for e in plain_bot["env"]}
    assert not names & {"KUBECONFIG", "ROLLOUT_BOT_CONTEXTS"}


def test_the_plain_manifests_are_the_chart_rendered_with_default_values() -> None:
    shipped = MANIFESTS.read_text()
    rendered = render()
    assert shipped.endswith(rendered), "deploy/manifests/rollout-bot.yaml is stale: make manifests"
    header = shipped[: len(shipped) - len(rendered)]
    assert all(line.startswith("#") for line in header.splitlines())


def test_the_servicemonitor_scrapes_the_probe_port() -> None:
    for mode, port in (("socket", "health"), ("http", "http")):
        (monitor,) = of_kind(
            render("serviceMonitor.enabled=true", f"slack.mode={mode}"), "ServiceMonitor"
        )
        assert monitor["spec"]["endpoints"][0]["port"] == port


# -- on the real control plane ----------------------------------------------------------------

CAN_I_ROW = re.compile(r"^(\S+)\s+\[[^\]]*\]\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s*$")


def rights(admin: Kubectl, subject: str, namespace: str) -> set[tuple[str, str]]:
    """(verb, resource) pairs `kubectl auth can-i --list` shows for `subject` in `namespace`."""
    out = admin.run("auth", "can-i", "--list", "--as", subject, "-n", namespace).stdout
    found = set()
    for line in out.splitlines()[1:]:
        match = CAN_I_ROW.match(line)
        if match:
            resource, names, verbs = match.groups()
            assert not names.strip(), f"unexpected resourceNames in {line!r}"
            found.update((verb, resource) for verb in verbs.split())
    return found


def granted(
    admin: Kubectl, namespace: str, service_account: str, where: str
) -> set[tuple[str, str]]:
    """What the ServiceAccount may do in `where`, beyond what every authenticated identity may."""
    baseline = rights(
        admin, f"system:serviceaccount:{namespace}:nobody-{uuid.uuid4().hex[:6]}", where
    )
    return rights(admin, f"system:serviceaccount:{namespace}:{service_account}", where) - baseline


def make_namespace(admin: Kubectl, *, restricted: bool) -> str:
    name = f"chart-{uuid.uuid4().hex[:8]}"
    admin.run("create", "namespace", name)
    if restricted:
        admin.run(
            "label",
            "namespace",
            name,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        )
    return name


@pytest.fixture
def namespaces(admin_kubectl: Kubectl) -> Iterator[list[str]]:
    """Namespaces a test makes (the release's own first); all deleted at the end."""
    made: list[str] = []
    yield made
    for name in made:
        admin_kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def install(
    admin: Kubectl, release: str, namespace: str, sets: list[str]
) -> tuple[list[dict[str, Any]], float]:
    """`helm template | kubectl apply --server-side` and the user's Secret, as the README says;
    returns the objects and the seconds until every pod of the chart was admitted."""
    text = render(*sets, namespace=namespace, release=release)
    started = time.monotonic()
    admin.run(
        "-n", namespace, "create", "secret", "generic", f"{release}-rollout-bot",
        "--from-literal=SLACK_BOT_TOKEN=xoxb-test-token",
        "--from-literal=SLACK_APP_TOKEN=xapp-test-token",
        "--from-literal=SLACK_SIGNING_SECRET=test-signing-secret",
        "--from-literal=ROLLOUT_BOT_STATE_KEY=0123456789abcdef0123456789abcdef",
        "--from-literal=REDIS_PASSWORD=0123456789abcdef",
    )  # fmt: skip
    admin.run("apply", "--server-side", "--field-manager=chart-test", "-f", "-", input=text)
    objects = documents(text)
    ns = admin.in_namespace(namespace)
    for deployment in [d for d in objects if d["kind"] in ("Deployment", "StatefulSet")]:
        labels = deployment["spec"]["selector"]["matchLabels"]
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        want = deployment["spec"]["replicas"]
        ns.wait_for(
            lambda s=selector, w=want: len(ns.get("pods", "-l", s)["items"]) >= w,
            timeout=60,
            what=f"{deployment['kind']} {deployment['metadata']['name']} to create {want} pods "
            f"(admission under Pod Security 'restricted'); events:\n"
            + ns.run("get", "events", "--field-selector", "type=Warning").stdout,
        )
    return objects, time.monotonic() - started


def uninstall_cluster_scoped(admin: Kubectl, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            admin.run("delete", obj["kind"].lower(), obj["metadata"]["name"], check=False)


@pytest.mark.cluster
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_chart_applies_under_restricted_pod_security_with_least_privilege(
    name: str, admin_kubectl: Kubectl, namespaces: list[str]
) -> None:
    home = make_namespace(admin_kubectl, restricted=True)
    target = make_namespace(admin_kubectl, restricted=False)
    elsewhere = make_namespace(admin_kubectl, restricted=False)
    namespaces.extend([home, target, elsewhere])
    release = f"t{uuid.uuid4().hex[:6]}"
    sets = list(VALUE_SETS[name])
    cluster_wide = "rbac.namespaces={*}" in sets
    if not cluster_wide:
        sets.append(f"rbac.namespaces={{{target}}}")
    objects, seconds = install(admin_kubectl, release, home, sets)
    try:
        print(f"\n[chart {name}] applied and every pod admitted in {seconds:.1f}s")
        account = f"{release}-rollout-bot"
        pods = admin_kubectl.in_namespace(home).get("pods")["items"]
        bot_pods = [
            p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/component") == "bot"
        ]
        assert len(bot_pods) == (3 if cluster_wide else 2)
        assert all(p["spec"]["serviceAccountName"] == account for p in bot_pods)
        redis_pods = [p for p in pods if p["metadata"]["name"] == f"{account}-redis-0"]
        assert len(redis_pods) == (0 if "redis.enabled=false" in sets else 1)

        assert granted(admin_kubectl, home, account, target) == NEEDED
        outside = granted(admin_kubectl, home, account, elsewhere)
        assert outside == (NEEDED if cluster_wide else set())
    finally:
        uninstall_cluster_scoped(admin_kubectl, objects)


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_a_bot_with_the_charts_service_account_token_runs_the_walkthrough(
    admin_kubectl: Kubectl,
    namespaces: list[str],
    cluster: ClusterInfo,
    start_bot: Any,
    slack: SlackStandin,
    tmp_path: Path,
) -> None:
    home = make_namespace(admin_kubectl, restricted=True)
    target = make_namespace(admin_kubectl, restricted=False)
    namespaces.extend([home, target])
    release = f"t{uuid.uuid4().hex[:6]}"
    install(admin_kubectl, release, home, [f"rbac.namespaces={{{target}}}"])
    token = admin_kubectl.run(
        "create", "token", f"{release}-rollout-bot", "-n", home, "--duration=1h"
    ).stdout.strip()
    kubeconfig = token_kubeconfig(tmp_path / "service-account.kubeconfig", cluster, token)
    driver = SlackDriver(slack, start_bot(kubeconfig=kubeconfig))
    kubectl = admin_kubectl.in_namespace(target)

    said = driver.run(f"create web --image=nginx:1.18-alpine -n {target}")
    assert "deployment.apps/web created" in said, said
    assert kubectl.rollout_status("web").returncode == 0
    said = driver.run(f"set image web nginx=nginx:1.19-alpine -n {target} --reason=chart")
    assert "image updated" in said, said
    assert kubectl.rollout_status("web").returncode == 0
    assert kubectl.images("web") == {"nginx": "nginx:1.19-alpine"}
    history = driver.ask(f"history web -n {target}")
    assert kubectl.history_revisions("web") == [1, 2]
    for cause in kubectl.history_table("web").values():
        assert cause in history
    status = driver.ask(f"status web -n {target}")
    oracle = kubectl.rollout_status("web").stdout.strip()
    assert oracle in status.replace("&quot;", '"')
    # Outside its namespaces the same token is refused, and the bot says so.
    refused = driver.ask(f"status web -n {home}")
    assert "not allowed" in refused or "not found" in refused.lower(), refused


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_the_readmes_grants_for_another_cluster_serve_it_as_a_context(
    admin_kubectl: Kubectl,
    namespaces: list[str],
    cluster: ClusterInfo,
    start_bot: Any,
    slack: SlackStandin,
    tmp_path: Path,
) -> None:
    """README "Install in a cluster": the grants rendered with --show-only, applied in the
    other cluster, a token for them, and that cluster served as context `east`."""
    home = make_namespace(admin_kubectl, restricted=False)
    target = make_namespace(admin_kubectl, restricted=False)
    namespaces.extend([home, target])
    grants = helm(
        "template",
        "rollout-bot",
        str(CHART),
        "-n",
        home,
        "--set",
        f"rbac.namespaces={{{target}}}",
        "--show-only",
        "templates/serviceaccount.yaml",
        "--show-only",
        "templates/rbac.yaml",
    ).stdout
    admin_kubectl.run("apply", "-f", "-", input=grants)
    token = admin_kubectl.run(
        "-n", home, "create", "token", "rollout-bot", "--duration=8760h"
    ).stdout.strip()
    kubeconfig = token_kubeconfig(tmp_path / "east.kubeconfig", cluster, token, context="east")
    admin_kubectl.in_namespace(target).apply(deployment_manifest("web", "nginx:1.18-alpine"))
    bot = start_bot(kubeconfig=kubeconfig, env={"ROLLOUT_BOT_CONTEXTS": "east"})
    driver = SlackDriver(slack, bot)

    status = driver.ask(f"status web -n {target} --context east")
    assert "web" in status and "not allowed" not in status, status
    refused = driver.ask(f"status web -n {home} --context east")
    assert "not allowed" in refused, refused


def token_kubeconfig(path: Path, cluster: ClusterInfo, token: str, context: str = "local") -> Path:
    """A kubeconfig that reaches the test cluster with a ServiceAccount token, as `context`."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": context,
                        "cluster": {
                            "server": cluster.server,
                            "certificate-authority": str(cluster.directory / "certs" / "ca.crt"),
                        },
                    }
                ],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": context, "context": {"cluster": context, "user": "sa"}}],
                "current-context": context,
            }
        )
    )
    return path


# -- the chart's scripts, run for real --------------------------------------------------------


def _init_container(*sets: str) -> tuple[str, dict[str, str]]:
    (deployment,) = of_kind(render(*sets), "Deployment")
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][:2] == ["python", "-c"]
    return init["command"][2], {e["name"]: e["value"] for e in init["env"]}


def _secret_volume(directory: Path, values: dict[str, str]) -> None:
    """A Secret volume as the kubelet lays it out: files are symlinks into a `..data` dir."""
    data = directory / "..2026_11_27_00_00_00.000000001"
    data.mkdir(parents=True)
    for key, value in values.items():
        (data / key).write_text(value)
    (directory / "..data").symlink_to(data.name)
    for key in values:
        (directory / key).symlink_to(Path("..data") / key)


def _run_init(script: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **env,
        "SECRETS_IN": str(tmp_path / "in"),
        "ROLLOUT_BOT_SECRETS_DIR": str(tmp_path / "out"),
    }
    (tmp_path / "out").mkdir()
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30
    )


def test_the_init_container_assembles_the_secrets_dir_the_bot_reads(tmp_path: Path) -> None:
    script, env = _init_container()
    _secret_volume(
        tmp_path / "in" / "main",
        {
            "SLACK_BOT_TOKEN": "xoxb-1-2-3\n",
            "SLACK_APP_TOKEN": "xapp-1-A-2",
            "ROLLOUT_BOT_STATE_KEY": "k" * 40,
            "REDIS_PASSWORD": "p@ss/w:rd",
        },
    )
    done = _run_init(script, env, tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "REDIS_URL",
        "ROLLOUT_BOT_STATE_KEY",
        "SLACK_APP_TOKEN",
        "SLACK_BOT_TOKEN",
    ]
    host = env["BUNDLED_REDIS"]
    assert (out / "REDIS_URL").read_text() == f"redis://:p%40ss%2Fw%3Ard@{host}/0"
    assert all((p.stat().st_mode & 0o077) == 0 for p in out.iterdir()), "readable by others"
    # The bot's own settings loader reads that directory.
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bot.config import load_settings; s = load_settings(); "
            "print(s.redis_url.get_secret_value(), s.slack_bot_token.get_secret_value())",
        ],
        env={"PATH": "/usr/bin:/bin", "ROLLOUT_BOT_SECRETS_DIR": str(out)},
        capture_output=True,
        text=True,
        cwd=CHART.parents[2],
    )
    assert check.stdout.split() == [f"redis://:p%40ss%2Fw%3Ard@{host}/0", "xoxb-1-2-3"], (
        check.stderr
    )


def test_the_init_container_refuses_a_secret_without_the_redis_password(tmp_path: Path) -> None:
    script, env = _init_container()
    _secret_volume(tmp_path / "in" / "main", {"SLACK_BOT_TOKEN": "xoxb-1"})
    done = _run_init(script, env, tmp_path)
    assert done.returncode != 0 and "REDIS_PASSWORD" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_init_container_copies_an_external_redis_url(tmp_path: Path) -> None:
    script, env = _init_container("redis.enabled=false", "externalRedis.url=rediss://:x@r:6380/0")
    assert "BUNDLED_REDIS" not in env
    _secret_volume(tmp_path / "in" / "main", {"SLACK_BOT_TOKEN": "xoxb-1"})
    _secret_volume(tmp_path / "in" / "redis", {"REDIS_URL": "rediss://:x@r:6380/0"})
    assert _run_init(script, env, tmp_path).returncode == 0
    assert (tmp_path / "out" / "REDIS_URL").read_text() == "rediss://:x@r:6380/0"


@pytest.mark.redis
def test_the_bundled_redis_config_runs_durable_and_password_protected(tmp_path: Path) -> None:
    import redis

    from tests.devkit.loopback import free_port

    text = render()
    (config,) = [c for c in of_kind(text, "ConfigMap") if "redis.conf" in c["data"]]
    (statefulset,) = of_kind(text, "StatefulSet")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    port = free_port()
    conf = config["data"]["redis.conf"].replace("port 6379", f"port {port}")
    conf = conf.replace("dir /data", f"dir {tmp_path}")
    (tmp_path / "redis.conf").write_text(conf + "bind 127.0.0.1\n")
    (tmp_path / "REDIS_PASSWORD").write_text("s3cret-pass")
    command = container["command"][2].replace("/etc/redis/redis.conf", str(tmp_path / "redis.conf"))
    command = command.replace("/var/run/redis/REDIS_PASSWORD", str(tmp_path / "REDIS_PASSWORD"))
    server = subprocess.Popen(
        ["sh", "-c", command], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        anonymous = redis.Redis(port=port, socket_timeout=2)
        authed = redis.Redis(port=port, password="s3cret-pass", socket_timeout=2)
        deadline = time.monotonic() + 10
        while True:
            try:
                authed.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and server.poll() is None, "redis did not start"
                time.sleep(0.1)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        settings = {
            k: authed.config_get(k)[k] for k in ("appendonly", "appendfsync", "maxmemory-policy")
        }
        assert settings == {
            "appendonly": "yes",
            "appendfsync": "everysec",
            "maxmemory-policy": "noeviction",
        }
        assert int(authed.config_get("maxmemory")["maxmemory"]) == 200 * 1024 * 1024
        probe = container["readinessProbe"]["exec"]["command"][2]
        probe = probe.replace("/var/run/redis/REDIS_PASSWORD", str(tmp_path / "REDIS_PASSWORD"))
        probe = probe.replace("redis-cli ping", f"redis-cli -p {port} ping")
        assert subprocess.run(["sh", "-c", probe], timeout=10).returncode == 0
        # The shell is replaced by redis-server (PID 1 in the pod gets the kubelet's SIGTERM),
        # and the password is not on its command line.
        assert Path(f"/proc/{server.pid}/comm").read_text().strip() == "redis-server"
        assert b"s3cret-pass" not in Path(f"/proc/{server.pid}/cmdline").read_bytes()
        server.terminate()
        assert server.wait(10) == 0  # a clean shutdown on SIGTERM
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


@pytest.mark.redis
@pytest.mark.parametrize("password", ["", "\n"])
def test_the_bundled_redis_refuses_to_run_with_an_empty_password(
    tmp_path: Path, password: str
) -> None:
    """A Secret with an empty REDIS_PASSWORD would have rendered `requirepass ""`: Redis open
    to every pod. The start command refuses it, and protected mode is on as a second guard."""
    from tests.devkit.loopback import free_port

    text = render()
    (config,) = [c for c in of_kind(text, "ConfigMap") if "redis.conf" in c["data"]]
    assert "protected-mode yes" in config["data"]["redis.conf"]
    (statefulset,) = of_kind(text, "StatefulSet")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    port = free_port()
    conf = config["data"]["redis.conf"].replace("port 6379", f"port {port}")
    (tmp_path / "redis.conf").write_text(conf.replace("dir /data", f"dir {tmp_path}"))
    (tmp_path / "REDIS_PASSWORD").write_text(password)
    command = container["command"][2].replace("/etc/redis/redis.conf", str(tmp_path / "redis.conf"))
    command = command.replace("/var/run/redis/REDIS_PASSWORD", str(tmp_path / "REDIS_PASSWORD"))
    server = subprocess.Popen(["sh", "-c", command], stderr=subprocess.PIPE, text=True)
    try:
        code = server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(10)
        raise AssertionError("redis-server started without a password") from None
    assert server.stderr is not None
    assert code != 0 and "REDIS_PASSWORD" in server.stderr.read()


def test_the_init_container_refuses_an_empty_redis_password(tmp_path: Path) -> None:
    script, env = _init_container()
    _secret_volume(tmp_path / "in" / "main", {"SLACK_BOT_TOKEN": "xoxb-1", "REDIS_PASSWORD": "\n"})
    done = _run_init(script, env, tmp_path)
    assert done.returncode != 0 and "REDIS_PASSWORD" in done.stderr
    assert not (tmp_path / "out" / "REDIS_URL").exists()


@pytest.mark.cluster
@pytest.mark.timeout(240)
def test_helm_install_with_no_values_then_uninstall(
    admin_kubectl: Kubectl, namespaces: list[str], cluster: ClusterInfo
) -> None:
    home = make_namespace(admin_kubectl, restricted=True)
    namespaces.append(home)
    release = f"i{uuid.uuid4().hex[:6]}"
    env = {"KUBECONFIG": str(cluster.kubeconfig)}
    started = time.monotonic()
    installed = helm_with_env(env, "install", release, str(CHART), "--namespace", home)
    ns = admin_kubectl.in_namespace(home)
    ns.wait_for(
        lambda: len(ns.get("pods")["items"]) >= 3,
        timeout=60,
        what="the two bot pods and the Redis pod to be admitted",
    )
    print(f"\n[helm install] to every pod admitted in {time.monotonic() - started:.1f}s")
    secret = f"{release}-rollout-bot"
    assert f"create secret generic {secret}" in installed.stdout
    assert "ROLLOUT_BOT_STATE_KEY" in installed.stdout and "REDIS_PASSWORD" in installed.stdout
    assert admin_kubectl.in_namespace("default").get("role", secret)["rules"]
    helm_with_env(env, "uninstall", release, "--namespace", home)
    gone = admin_kubectl.run("-n", "default", "get", "role", secret, check=False)
    assert gone.returncode != 0, "uninstall left the Role behind"


@pytest.mark.cluster
@pytest.mark.timeout(240)
def test_install_generates_the_secrets_upgrades_keep_them_and_an_offline_render_refuses(
    admin_kubectl: Kubectl, namespaces: list[str], cluster: ClusterInfo
) -> None:
    """With cluster access helm can keep what it generated; `helm template` (Argo CD) cannot,
    and must not hand the cluster a new state key or Redis password on every sync."""
    home = make_namespace(admin_kubectl, restricted=False)
    namespaces.append(home)
    release = f"s{uuid.uuid4().hex[:6]}"
    env = {"KUBECONFIG": str(cluster.kubeconfig)}
    sets = ["--set", "secrets.create=true", "--set", "secrets.slackBotToken=xoxb-1-2"]
    secret_name = f"{release}-rollout-bot"

    def stored() -> dict[str, str]:
        data = admin_kubectl.in_namespace(home).get("secret", secret_name)["data"]
        return {k: data[k] for k in ("ROLLOUT_BOT_STATE_KEY", "REDIS_PASSWORD")}

    helm_with_env(env, "install", release, str(CHART), "--namespace", home, *sets)
    generated = stored()
    assert all(generated.values())
    helm_with_env(env, "upgrade", release, str(CHART), "--namespace", home, *sets)
    assert stored() == generated, "an upgrade rotated the state key or the Redis password"

    offline = template(
        "secrets.create=true",
        "secrets.slackBotToken=xoxb-1-2",
        namespace=home,
        release=release,
        check=False,
    )
    assert offline.returncode != 0 and "secrets.stateKey" in offline.stderr, offline.stdout[:300]
    helm_with_env(env, "uninstall", release, "--namespace", home)
