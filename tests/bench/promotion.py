"""Phase 5: a promotion to `BENCH_PROMOTION_N` targets (default 30) across 3 contexts, beside
the same changes made one by one.

One control plane (the bench's own) serves four kubeconfig contexts through one counting proxy:
`staging` (the source, Deployment `src` running app:2) and `p1`, `p2`, `p3`, each with its own
namespaces of 1-replica Deployments running app:1.

- Promotion: pipeline `bench` with wave 1 = one canary Deployment in p1 and wave 2 = the N
  targets (N/3 per context), `gate: approval` (bob approves), soak 0s. Measured: from the
  gate's Approve click to the last of the N targets rolled out (kubectl's verdict, seen by the
  bench's own watch), and the API requests the bot made meanwhile.
- One by one: the same N changes as `/rollout set image … --context pK`, each sent once the
  previous one is rolled out, as a person would make them; same figures.
"""

from __future__ import annotations

import os
import time
from typing import Any

from tests.bench.countproxy import CountingProxy
from tests.bench.harness import Bench, log, wait_until
from tests.bench.multi import _create, _requests, _rolled_out
from tests.bench.observer import DeploymentObserver
from tests.devkit.slack.signed_requests import send_block_action, send_slash_command
from tests.support.bot_process import SIGNING_SECRET, message_text
from tests.support.multicluster import kubeconfig_path, named_kubeconfig

N = int(os.environ.get("BENCH_PROMOTION_N", "30"))
CONTEXTS = ("p1", "p2", "p3")
TIMEOUT = int(os.environ.get("BENCH_PROMOTION_TIMEOUT", "300"))
CHANNEL = "C0PROMO"


def _policy(source_ns: str, canary_ns: str, targets: list[tuple[str, str, str]]) -> str:
    wave = ", ".join(
        f"{{context: {c}, namespace: {ns}, workload: deploy/{name}}}" for c, ns, name in targets
    )
    covered = ", ".join(sorted({ns for _, ns, _ in targets}))
    return "\n".join(
        [
            "permissions:",
            '  - users: ["*"]',
            '    namespaces: ["*"]',
            '    actions: ["*"]',
            "approvals:",
            f"  - namespaces: [{covered}]",
            "    actions: [set-image]",
            "    approvers: [U0BOB]",
            "pipelines:",
            "  bench:",
            f"    from: {{context: staging, namespace: {source_ns}, workload: deploy/src}}",
            "    waves:",
            f"      - [{{context: p1, namespace: {canary_ns}, workload: deploy/canary}}]",
            f"      - [{wave}]",
            "    gate: approval",
            "    soak: 0s",
            "",
        ]
    )


def _gate_value(bench: Bench) -> str | None:
    for message in bench.slack.messages(CHANNEL):
        for block in message.blocks:
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                if element.get("action_id") == "promotion_approve":
                    return str(element["value"])
    return None


def _send(bot: Any, bench: Bench, text: str, tag: str) -> None:
    response = send_slash_command(
        bot.events_url,
        SIGNING_SECRET,
        text,
        user_id="U0ALICE",
        user_name="alice",
        channel_id=CHANNEL,
        response_url=bench.slack.response_url(tag),
    )
    if response.status != 200:
        raise RuntimeError(f"{text!r} answered {response.status}")


def promotion_vs_one_by_one(bench: Bench) -> dict[str, Any]:
    run = bench.run_id
    per_context = max(1, N // len(CONTEXTS))
    names = [f"t-{i:02d}" for i in range(per_context)]
    source_ns, canary_ns = f"bench-src-{run}", f"bench-canary-{run}"
    promo_ns = {c: f"bench-promo-{c}-{run}" for c in CONTEXTS}
    seq_ns = {c: f"bench-seq-{c}-{run}" for c in CONTEXTS}
    admin = bench.admin
    bench.redis.flush()
    log(f"phase 5: source, canary and {2 * per_context * len(CONTEXTS)} Deployments")
    _create(bench, admin, source_ns, ["src"])
    admin.in_namespace(source_ns).run("set", "image", "deployment/src", "src=app:2")
    _create_named(bench, canary_ns, ["canary"])
    for c in CONTEXTS:
        # Container names follow the source's (`src`), so the promotion has something to set.
        _create_named(bench, promo_ns[c], names)
        _create_named(bench, seq_ns[c], names)
    for namespace in [source_ns, canary_ns, *promo_ns.values(), *seq_ns.values()]:
        count = len(names) if namespace in (*promo_ns.values(), *seq_ns.values()) else 1
        wait_until(
            lambda ns=namespace, n=count: _rolled_out(admin, ns, n),
            300,
            f"Deployments rolled out in {namespace}",
            every=1.0,
        )
    wait_until(
        lambda: (
            _rolled_out(admin, source_ns, 1)
            and admin.in_namespace(source_ns).images("src")["src"] == "app:2"
        ),
        120,
        "the source on app:2",
    )
    observer = DeploymentObserver(
        bench.cluster.kubeconfig, [*promo_ns.values(), *seq_ns.values()], min_generation=2
    )
    bench.stack.callback(observer.stop)
    observer.start()

    certs = bench.cluster.directory / "certs"
    proxy = CountingProxy(bench.cluster.server, certs, bench.workdir, "promotion")
    proxy.start()
    bench.stack.callback(proxy.stop)
    proxied = proxy.kubeconfig_for(
        bench.cluster.bot_kubeconfig, bench.workdir / "promotion.proxied"
    )
    files = [
        named_kubeconfig(proxied, name, bench.workdir / f"promotion-{name}.kubeconfig")
        for name in ("staging", *CONTEXTS)
    ]
    policy = bench.workdir / "promotion-policy.yaml"
    targets = [(c, promo_ns[c], name) for name in names for c in CONTEXTS]
    policy.write_text(_policy(source_ns, canary_ns, targets))
    bot = bench.start_bot(
        env={
            "KUBECONFIG": kubeconfig_path(files),
            "ROLLOUT_BOT_CONTEXTS": ",".join(("staging", *CONTEXTS)),
            "ROLLOUT_BOT_POLICY": str(policy),
        }
    )

    # -- the promotion -----------------------------------------------------------------------------
    _send(bot, bench, "promote bench", "promo")

    def gate_or_refusal() -> str | None:
        replies = [c for c in bench.slack.calls("response_url") if c.params.get("_tag") == "promo"]
        if replies:
            raise RuntimeError(f"promote was refused: {message_text(replies[0].params)}")
        return _gate_value(bench)

    value = wait_until(gate_or_refusal, 120, "the gate before wave 2")
    log(f"phase 5: promotion to {len(targets)} targets; approving the gate")
    started = time.time()
    send_block_action(
        bot.events_url,
        SIGNING_SECRET,
        "promotion_approve",
        value,
        "U0BOB",
        CHANNEL,
        "",
        response_url=bench.slack.response_url("gate"),
        message={"ts": "", "type": "message"},
        user_name="bob",
    )

    def promoted() -> float | None:
        done = [observer.done(ns, name) for _, ns, name in targets]
        return max(done) if all(d is not None for d in done) else None  # type: ignore[type-var]

    ended = wait_until(promoted, TIMEOUT, "every promotion target rolled out", every=0.2)
    promotion = {
        "targets": len(targets),
        "gate_to_last_complete_s": round(ended - started, 2),
        "api_requests": _requests([proxy], started, ended),
        "finished_message": _finished(bench, time.time() + 30),
    }

    # -- the same changes, one by one ------------------------------------------------------------
    log(f"phase 5: the same {len(targets)} changes one by one")
    started = time.time()
    for index, (c, _, name) in enumerate(targets):
        _send(bot, bench, f"set image {name} src=app:2 -n {seq_ns[c]} --context {c}", f"s{index}")
        wait_until(
            lambda ns=seq_ns[c], n=name: observer.done(ns, n),
            120,
            f"{seq_ns[c]}/{name} rolled out",
            every=0.1,
        )
    ended = time.time()
    one_by_one = {
        "targets": len(targets),
        "first_to_last_complete_s": round(ended - started, 2),
        "api_requests": _requests([proxy], started, ended),
    }
    bot.stop()
    proxy.stop()
    return {"promotion": promotion, "one_by_one": one_by_one, "contexts": len(CONTEXTS)}


def _create_named(bench: Bench, namespace: str, names: list[str]) -> None:
    """Like multi._create, with every container named `src` (the source's container)."""
    import json

    bench.admin.run("create", "namespace", namespace)
    from tests.conftest import grant_bot

    grant_bot(bench.admin, namespace)
    items = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "src", "image": "app:1"}]},
                },
            },
        }
        for name in names
    ]
    manifest = {"apiVersion": "v1", "kind": "List", "items": items}
    bench.admin.run("create", "-f", "-", input=json.dumps(manifest), timeout=300)


def _finished(bench: Bench, deadline: float) -> bool:
    """The promotion message says finished (after the last target's soak of 0s)."""
    while time.time() < deadline:
        for message in bench.slack.messages(CHANNEL):
            if "finished" in message_text(message.as_api_dict()) and "Promotion `p-" in (
                message_text(message.as_api_dict())
            ):
                return True
        time.sleep(0.2)
    return False


def render(result: dict[str, Any]) -> list[str]:
    promo, seq = result["promotion"], result["one_by_one"]
    return [
        f"   promotion to {promo['targets']} targets in {result['contexts']} contexts: "
        f"gate → last target complete {promo['gate_to_last_complete_s']} s, "
        f"{promo['api_requests']['total']} API requests",
        f"   the same changes one by one (each after the last is rolled out): "
        f"{seq['first_to_last_complete_s']} s, {seq['api_requests']['total']} API requests",
        f"   requests by kind (promotion): {promo['api_requests']['by_kind']}",
        f"   requests by kind (one by one): {seq['api_requests']['by_kind']}",
    ]
