"""A pod template as ``kubectl rollout history --revision=N`` describes it.

kubectl's DescribePodTemplate (a subset, tab-separated, no trailing newline); the volume printers
are in ``describe_volumes``. The integration tests compare it with kubectl's own text.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from bot.domain.annotations import LAST_APPLIED_ANNOTATION
from bot.domain.describe_format import MAX_ANNOTATION_LEN, go_len, quantity, shorten
from bot.domain.describe_volumes import volume_lines
from bot.domain.readers import (
    Json,
    as_int,
    as_map,
    as_str,
    go_quote,
    maps,
    opt_int,
    seq,
)


def _multiline_pairs(title: str, items: Mapping[str, str], sep: str) -> list[str]:
    if not items:
        return [f"{title}:\t<none>"]
    lines = []
    for i, key in enumerate(sorted(items)):
        lines.append(f"{title}:\t{key}{sep}{items[key]}" if i == 0 else f"\t{key}{sep}{items[key]}")
    return lines


def _annotation_lines(annotations: Mapping[str, str]) -> list[str]:
    """printAnnotationsMultiline: the last-applied-configuration is never shown; a value longer
    than the line allows (in bytes) or of several lines goes on its own, shortened lines."""
    keys = sorted(k for k in annotations if k != LAST_APPLIED_ANNOTATION)
    if not keys:
        return ["  Annotations:\t<none>"]
    lines = []
    for i, key in enumerate(keys):
        lead = "  Annotations:\t" if i == 0 else "\t"
        value = annotations[key].removesuffix("\n")
        if go_len(value) + go_len(key) + 2 > MAX_ANNOTATION_LEN or "\n" in value:
            lines.append(f"{lead}{key}:")
            lines.extend(
                f"\t  {shorten(part, MAX_ANNOTATION_LEN - 2)}" for part in value.split("\n")
            )
        else:
            lines.append(f"{lead}{key}: {value}")
    return lines


def _probe_text(probe: Json) -> str:
    attrs = (
        f"delay={as_int(probe.get('initialDelaySeconds'))}s "
        f"timeout={as_int(probe.get('timeoutSeconds'))}s "
        f"period={as_int(probe.get('periodSeconds'))}s "
        f"#success={as_int(probe.get('successThreshold'))} "
        f"#failure={as_int(probe.get('failureThreshold'))}"
    )
    if isinstance(probe.get("exec"), Mapping):
        command = " ".join(str(c) for c in seq(as_map(probe["exec"]).get("command")))
        return f"exec [{command}] {attrs}"
    if isinstance(probe.get("httpGet"), Mapping):
        return f"http-get {_http_get_url(as_map(probe['httpGet']))} {attrs}"
    if isinstance(probe.get("tcpSocket"), Mapping):
        tcp = as_map(probe["tcpSocket"])
        return f"tcp-socket {as_str(tcp.get('host'))}:{tcp.get('port', '')} {attrs}"
    if isinstance(probe.get("grpc"), Mapping):
        grpc = as_map(probe["grpc"])
        return f"grpc <pod>:{as_int(grpc.get('port'))} {as_str(grpc.get('service'))} {attrs}"
    return f"unknown {attrs}"


def _http_get_url(get: Json) -> str:
    """The probe's url.URL{Scheme, Host: JoinHostPort(host, port), Path}.String(): the path
    escaped as Go escapes one, and given a leading ``/`` after the host."""
    host, port = as_str(get.get("host")), str(get.get("port", ""))
    if port:
        host = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    scheme = as_str(get.get("scheme")).lower()
    path = urllib.parse.quote(as_str(get.get("path")), safe="$&+,/:;=@")
    if path and not path.startswith("/") and host:
        path = "/" + path
    authority = f"//{host}" if host or path else ""
    return (f"{scheme}:" if scheme else "") + authority + path


def _resource_field_value(ref: Json, container: Json) -> str:
    """ExtractContainerResourceValue on the described container (kubectl ignores the ref's
    containerName there): CPU in ceil(millicores / divisor millicores), other resources in
    ceil(value / divisor); a missing amount is 0, and a 0 CPU or memory *limit* is shown as
    ``node allocatable`` (what the kubelet would use)."""
    resource = as_str(ref.get("resource"))
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        return ""
    amounts = as_map(as_map(container.get("resources")).get(kind))
    amount = quantity(amounts.get(name, "0")) or Fraction(0)
    divisor = quantity(ref.get("divisor", "1")) or Fraction(1)
    if divisor == 0:
        divisor = Fraction(1)
    if name == "cpu":
        value = math.ceil(math.ceil(amount * 1000) / math.ceil(divisor * 1000))
    elif name in ("memory", "ephemeral-storage") or name.startswith("hugepages-"):
        value = math.ceil(math.ceil(amount) / math.ceil(divisor))
    else:
        return ""
    text = str(value)
    if text == "0" and resource in ("limits.cpu", "limits.memory"):
        return "node allocatable"
    return text


def _env_line(env: Json, container: Json) -> list[str]:
    name = as_str(env.get("name"))
    source = env.get("valueFrom")
    if not isinstance(source, Mapping):
        parts = as_str(env.get("value")).split("\n")
        return [f"      {name}:\t{parts[0]}"] + [f"      \t{p}" for p in parts[1:]]
    field, resource = source.get("fieldRef"), source.get("resourceFieldRef")
    secret, config = source.get("secretKeyRef"), source.get("configMapKeyRef")
    if isinstance(field, Mapping):
        path = f"{as_str(field.get('apiVersion'))}:{as_str(field.get('fieldPath'))}"
        return [f"      {name}:\t ({path})"]
    if isinstance(resource, Mapping):
        value = _resource_field_value(resource, container)
        return [f"      {name}:\t{value} ({as_str(resource.get('resource'))})"]
    for ref, kind in ((secret, "in secret"), (config, "of config map")):
        if isinstance(ref, Mapping):
            optional = "true" if ref.get("optional") is True else "false"
            return [
                f"      {name}:\t<set to the key '{as_str(ref.get('key'))}' {kind} "
                f"'{as_str(ref.get('name'))}'>\tOptional: {optional}"
            ]
    return [f"      {name}:\t<unknown>"]


def _port_text(port: Json, key: str) -> str:
    """``80/TCP (http)``, as kubectl's describeContainerPorts / describeContainerHostPorts
    print it (the port's name, when it has one, since kubectl 1.34)."""
    text = f"{as_int(port.get(key))}/{as_str(port.get('protocol')) or 'TCP'}"
    name = as_str(port.get("name"))
    return f"{text} ({name})" if name else text


def _container_lines(title: str, containers: list[Mapping[str, Any]]) -> list[str]:
    lines = [f"  {title}:" + ("" if containers else " <none>")]
    for c in containers:
        lines.append(f"   {as_str(c.get('name'))}:")
        lines.append(f"    Image:\t{as_str(c.get('image'))}")
        ports = maps(c.get("ports"))
        container_ports = ", ".join(_port_text(p, "containerPort") for p in ports)
        host_ports = ", ".join(_port_text(p, "hostPort") for p in ports)
        # kubectl picks the plural by a comma in the text (a port's name may hold one).
        plural = "s" if "," in container_ports else ""
        lines.append(f"    Port{plural}:\t{container_ports or '<none>'}")
        plural = "s" if "," in host_ports else ""
        lines.append(f"    Host Port{plural}:\t{host_ports or '<none>'}")
        seccomp = as_map(as_map(c.get("securityContext")).get("seccompProfile"))
        if seccomp:
            lines.append(f"    SeccompProfile:\t{as_str(seccomp.get('type'))}")
            if seccomp.get("type") == "Localhost":
                lines.append(f"      LocalhostProfile:\t{as_str(seccomp.get('localhostProfile'))}")
        for key, label in (("command", "Command"), ("args", "Args")):
            values = seq(c.get(key))
            if values:
                lines.append(f"    {label}:")
                lines.extend(f"      {part}" for v in values for part in str(v).split("\n"))
        resources = as_map(c.get("resources"))
        for key, label in (("limits", "Limits"), ("requests", "Requests")):
            amounts = as_map(resources.get(key))
            if amounts:
                lines.append(f"    {label}:")
                lines.extend(f"      {k}:\t{amounts[k]}" for k in sorted(amounts))
        for key, label in (
            ("livenessProbe", "Liveness"),
            ("readinessProbe", "Readiness"),
            ("startupProbe", "Startup"),
        ):
            if isinstance(c.get(key), Mapping):
                lines.append(f"    {label}:\t{_probe_text(c[key])}")
        env_from = maps(c.get("envFrom"))
        if env_from:
            lines.append("    Environment Variables from:")
            for source in env_from:
                kind = "ConfigMap" if isinstance(source.get("configMapRef"), Mapping) else "Secret"
                ref = as_map(source.get("configMapRef") or source.get("secretRef"))
                optional = "true" if ref.get("optional") is True else "false"
                prefix = as_str(source.get("prefix"))
                with_prefix = f" with prefix '{prefix}'" if prefix else ""
                lines.append(
                    f"      {as_str(ref.get('name'))}\t{kind}{with_prefix}\tOptional: {optional}"
                )
        env = maps(c.get("env"))
        lines.append("    Environment:" + ("" if env else "\t<none>"))
        for entry in env:
            lines.extend(_env_line(entry, c))
        mounts = sorted(maps(c.get("volumeMounts")), key=lambda m: as_str(m.get("mountPath")))
        lines.append("    Mounts:" + ("" if mounts else "\t<none>"))
        for m in mounts:
            flags = ["ro" if m.get("readOnly") is True else "rw"]
            if as_str(m.get("subPath")):
                flags.append(f"path={go_quote(as_str(m.get('subPath')))}")
            mounted = f"{as_str(m.get('mountPath'))} from {as_str(m.get('name'))}"
            lines.append(f"      {mounted} ({','.join(flags)})")
        devices = sorted(maps(c.get("volumeDevices")), key=lambda d: as_str(d.get("devicePath")))
        if devices:
            # kubectl's "none" here is the mounts' (it says <none> beside listed devices).
            lines.append("    Devices:" + ("" if mounts else "\t<none>"))
            lines.extend(
                f"      {as_str(d.get('devicePath'))} from {as_str(d.get('name'))}" for d in devices
            )
    return lines


def _selector_text(selector: Json) -> str:
    """metav1.LabelSelectorAsSelector(...).String(): requirements sorted by key."""
    requirements: list[tuple[str, str]] = []
    for key, value in as_map(selector.get("matchLabels")).items():
        requirements.append((str(key), f"{key}={value}"))
    for expr in maps(selector.get("matchExpressions")):
        key, op = as_str(expr.get("key")), as_str(expr.get("operator"))
        values = ",".join(sorted(str(v) for v in seq(expr.get("values"))))
        text = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(op, key)
        requirements.append((key, text))
    return ",".join(text for _, text in sorted(requirements, key=lambda r: r[0]))


def _topology_lines(constraints: list[Mapping[str, Any]]) -> list[str]:
    if not constraints:
        return []
    lines = []
    ordered = sorted(constraints, key=lambda c: as_str(c.get("topologyKey")))
    for i, tsc in enumerate(ordered):
        text = (
            f"{as_str(tsc.get('topologyKey'))}:{as_str(tsc.get('whenUnsatisfiable'))}"
            f" when max skew {as_int(tsc.get('maxSkew'))} is exceeded"
        )
        if isinstance(tsc.get("labelSelector"), Mapping):
            # FormatLabelSelector: an empty selector (everything) reads <none>.
            text += f" for selector {_selector_text(as_map(tsc['labelSelector'])) or '<none>'}"
        lines.append(("  Topology Spread Constraints:\t" if i == 0 else "  \t") + text)
    return lines


def _toleration_lines(tolerations: list[Mapping[str, Any]]) -> list[str]:
    if not tolerations:
        return ["  Tolerations:\t<none>"]
    lines = []
    # kubectl sorts by key before printing.
    for i, t in enumerate(sorted(tolerations, key=lambda t: as_str(t.get("key")))):
        key, value, effect = as_str(t.get("key")), as_str(t.get("value")), as_str(t.get("effect"))
        text = key + (f"={value}" if value else "") + (f":{effect}" if effect else "")
        if t.get("operator") == "Exists" and not value:
            text += " op=Exists" if key or effect else "op=Exists"
        seconds = opt_int(t.get("tolerationSeconds"))
        if seconds is not None:
            text += f" for {seconds}s"
        lines.append(("  Tolerations:\t" if i == 0 else "\t") + text)
    return lines


def describe_template(template: Json) -> str:
    """A pod template as ``kubectl rollout history --revision=N`` describes it (kubectl's
    DescribePodTemplate; tab-separated, no trailing newline): labels, annotations, service
    account, init containers and containers (image, ports, seccomp profile, command, resources,
    probes, environment with resourceFieldRef values, mounts), volumes (emptyDir, configMap,
    secret, PVC, hostPath, projected, downwardAPI, CSI, ephemeral, NFS), topology spread
    constraints, priority class, node selectors and tolerations (sorted by key, as kubectl
    does). The integration test compares it with kubectl's text for a fixture of templates."""
    metadata = as_map(template.get("metadata"))
    spec = as_map(template.get("spec"))
    labels = {str(k): as_str(v) for k, v in as_map(metadata.get("labels")).items()}
    annotations = {str(k): as_str(v) for k, v in as_map(metadata.get("annotations")).items()}
    lines = ["Pod Template:", *_multiline_pairs("  Labels", labels, "=")]
    if annotations:
        lines += _annotation_lines(annotations)
    if as_str(spec.get("serviceAccountName")):
        lines.append(f"  Service Account:\t{as_str(spec.get('serviceAccountName'))}")
    if maps(spec.get("initContainers")):
        lines += _container_lines("Init Containers", maps(spec.get("initContainers")))
    lines += _container_lines("Containers", maps(spec.get("containers")))
    lines += volume_lines(maps(spec.get("volumes")))
    lines += _topology_lines(maps(spec.get("topologySpreadConstraints")))
    if as_str(spec.get("priorityClassName")):
        lines.append(f"  Priority Class Name:\t{as_str(spec.get('priorityClassName'))}")
    node_selector = {str(k): as_str(v) for k, v in as_map(spec.get("nodeSelector")).items()}
    lines += _multiline_pairs("  Node-Selectors", node_selector, "=")
    lines += _toleration_lines(maps(spec.get("tolerations")))
    return "\n".join(lines)
