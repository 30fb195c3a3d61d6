"""A real local Kubernetes control plane, for the tests and the playground: etcd,
kube-apiserver, kube-controller-manager and a fake kubelet, all on 127.0.0.1.

    python -m tests.devkit.control_plane up DIR     # start, write DIR/kubeconfig, return
    python -m tests.devkit.control_plane down DIR   # stop exactly what `up` started, remove DIR

`up` writes into DIR:
    kubeconfig        cluster admin (token in system:masters)
    bot.kubeconfig    the identity `slack-bot`, which has no rights of its own
    pids              one `name pid` line per process it started
    logs/             each process's output
    audit.log         the API server's audit log (JSON lines): who changed a workload, and as
                      whom (impersonation), and the access reviews asked

The binaries come from tests/devkit/cluster/build-control-plane.sh (built once, cached outside
the repository).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.devkit.lifetime import ending_with_this_process
from tests.devkit.loopback import free_port

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = Path(__file__).resolve().parent / "cluster" / "build-control-plane.sh"

# Controllers the rollout semantics need. node-lifecycle and pod-garbage-collector stay off on
# purpose: with a fake node they would evict or delete the pods the fake kubelet made Ready.
# statefulset-controller: the Helm chart's bundled Redis is a StatefulSet; the chart tests check
# that its pod is admitted under Pod Security "restricted".
# resourcequota-controller: keeps a ResourceQuota's `status.used`, which the (default-on)
# ResourceQuota admission plugin checks new pods against; without it a quota has no status and
# admission refuses every pod in its namespace. It only acts in namespaces that have a quota.
CONTROLLERS = ",".join(
    [
        "deployment-controller",
        "replicaset-controller",
        "statefulset-controller",
        "daemonset-controller",
        "garbage-collector-controller",
        "namespace-controller",
        "serviceaccount-controller",
        "resourcequota-controller",
    ]
)

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete]
    resources:
      - group: apps
        resources: [deployments, statefulsets, daemonsets]
      - group: authorization.k8s.io
        resources: [selfsubjectaccessreviews]
  - level: None
"""

# Bring-up on 2 cores takes ~10-30 s; a generous bound keeps a slow CI machine from flaking.
STARTUP_TIMEOUT_S = 120.0


def binaries_dir() -> Path:
    """The cached control-plane binaries, building them first if needed (progress on stderr)."""
    out = subprocess.run(
        [str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout.strip()
    return Path(out.splitlines()[-1])


def _kubeconfig(server: str, ca_file: Path, user: str, token: str) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    return json.dumps(config, indent=2)


def kubectl_binary() -> Path:
    """kubectl built from the same k8s.io/kubernetes version as the API server: the tests'
    oracle speaks the cluster's version (a distribution's kubectl may be several behind)."""
    return binaries_dir() / "kubectl"


@dataclass
class ClusterInfo:
    directory: Path
    server: str
    kubeconfig: Path
    bot_kubeconfig: Path
    #: The kubectl of the cluster's version (see `kubectl_binary`).
    kubectl: Path

    @classmethod
    def load(cls, directory: Path) -> ClusterInfo:
        meta = json.loads((directory / "cluster.json").read_text())
        return cls(
            directory=directory,
            server=meta["server"],
            kubeconfig=directory / "kubeconfig",
            bot_kubeconfig=directory / "bot.kubeconfig",
            kubectl=Path(meta["kubectl"]) if meta.get("kubectl") else kubectl_binary(),
        )

    def is_ready(self) -> bool:
        return _get_ok(self.server + "/readyz", self.directory / "certs" / "ca.crt")


def _make_certificates(certs: Path) -> Path:
    """A throwaway CA and an apiserver serving certificate for 127.0.0.1; returns the CA file.

    The apiserver's own self-signed certificate lacks extensions that urllib3's strict
    verification requires, so clients would have to skip verification; this way they verify.
    """

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=certs)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "30",
        "-subj",
        "/CN=rollout-bot-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "apiserver.key",
        "-out",
        "apiserver.csr",
        "-subj",
        "/CN=kube-apiserver",
    )
    (certs / "apiserver.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n"
        "authorityKeyIdentifier=keyid\n"
        "subjectKeyIdentifier=hash\n"
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "apiserver.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "apiserver.crt",
        "-days",
        "30",
        "-extfile",
        "apiserver.ext",
    )
    return certs / "ca.crt"


def _get_ok(url: str, ca_file: Path | None = None) -> bool:
    context = None
    if url.startswith("https"):
        context = ssl.create_default_context()
        if ca_file is not None and ca_file.exists():
            context.load_verify_locations(str(ca_file))
        else:
            # Only while the apiserver has not yet written its self-signed certificate.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


class ControlPlane:
    def __init__(
        self, directory: Path, *, ready_delay: float = 1.0, ends_with_caller: bool = False
    ) -> None:
        """`ends_with_caller`: every process of the plane stops when this one dies, even by
        SIGKILL (the playground); without it they outlive their starter (`make cluster-up`)."""
        self.directory = directory.resolve()
        self.ready_delay = ready_delay
        self.ends_with_caller = ends_with_caller
        self.logs = self.directory / "logs"
        self.pids: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def up(self) -> ClusterInfo:
        bins = binaries_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        certs = self.directory / "certs"
        certs.mkdir(exist_ok=True)
        started = time.monotonic()

        etcd_port, peer_port, api_port, kcm_port = (free_port() for _ in range(4))
        server = f"https://127.0.0.1:{api_port}"
        tokens = {name: secrets.token_hex(16) for name in ("admin", "kcm", "bot")}
        (self.directory / "tokens.csv").write_text(
            f'{tokens["admin"]},admin,1,"system:masters"\n'
            f'{tokens["kcm"]},system:kube-controller-manager,2,"system:masters"\n'
            f"{tokens['bot']},slack-bot,3\n"
        )
        os.chmod(self.directory / "tokens.csv", 0o600)
        sa_key = self.directory / "sa.key"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True
        )
        ca_file = _make_certificates(certs)
        (self.directory / "kubeconfig").write_text(
            _kubeconfig(server, ca_file, "admin", tokens["admin"])
        )
        (self.directory / "bot.kubeconfig").write_text(
            _kubeconfig(server, ca_file, "slack-bot", tokens["bot"])
        )
        (self.directory / "kcm.kubeconfig").write_text(
            _kubeconfig(server, ca_file, "kcm", tokens["kcm"])
        )
        (self.directory / "cluster.json").write_text(
            json.dumps(
                {
                    "server": server,
                    "api_port": api_port,
                    "etcd_port": etcd_port,
                    "kubectl": str(bins / "kubectl"),
                }
            )
        )

        try:
            etcd_data = Path("/dev/shm") if Path("/dev/shm").is_dir() else self.directory
            etcd_dir = Path(
                os.path.join(str(etcd_data), f"rollout-bot-etcd-{api_port}-{os.getpid()}")
            )
            (self.directory / "etcd-data-dir").write_text(str(etcd_dir))
            self._spawn(
                "etcd",
                [
                    str(bins / "etcd"),
                    "--name=node0",
                    f"--data-dir={etcd_dir}",
                    f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-cluster=node0=http://127.0.0.1:{peer_port}",
                    "--auto-compaction-retention=1",
                    "--quota-backend-bytes=2147483648",
                    "--unsafe-no-fsync=true",
                    "--log-level=warn",
                ],
            )
            self._wait("etcd", lambda: _get_ok(f"http://127.0.0.1:{etcd_port}/health"))
            self._spawn(
                "kube-apiserver",
                [
                    str(bins / "kube-apiserver"),
                    f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                    "--etcd-prefix=/registry",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={api_port}",
                    "--advertise-address=127.0.0.1",
                    "--endpoint-reconciler-type=none",
                    f"--tls-cert-file={certs / 'apiserver.crt'}",
                    f"--tls-private-key-file={certs / 'apiserver.key'}",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={sa_key}",
                    f"--service-account-signing-key-file={sa_key}",
                    f"--token-auth-file={self.directory / 'tokens.csv'}",
                    "--authorization-mode=RBAC",
                    *self._audit_flags(),
                    # Pods are created by the RS controller the moment a namespace exists; the
                    # ServiceAccount admission would reject them until the SA controller caught up.
                    "--disable-admission-plugins=ServiceAccount",
                    "--enable-priority-and-fairness=false",
                    "--allow-privileged=true",
                    # Beta, off by default: with it off the server drops clusterTrustBundle
                    # projected sources, and the describe tests could not show kubectl's text
                    # for templates that carry one.
                    "--feature-gates=ClusterTrustBundle=true,ClusterTrustBundleProjection=true",
                    "--profiling=false",
                    "--v=1",
                ],
            )
            self._wait("kube-apiserver", lambda: _get_ok(server + "/readyz", ca_file))
            self._spawn(
                "kube-controller-manager",
                [
                    str(bins / "kube-controller-manager"),
                    f"--kubeconfig={self.directory / 'kcm.kubeconfig'}",
                    f"--controllers={CONTROLLERS}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={kcm_port}",
                    "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
                    "--kube-api-qps=200",
                    "--kube-api-burst=400",
                    "--concurrent-deployment-syncs=10",
                    "--concurrent-replicaset-syncs=10",
                    "--concurrent-statefulset-syncs=10",
                    "--concurrent-daemonset-syncs=10",
                    "--v=1",
                ],
            )
            self._wait(
                "kube-controller-manager", lambda: _get_ok(f"https://127.0.0.1:{kcm_port}/healthz")
            )
            self._spawn(
                "fake-kubelet",
                [
                    sys.executable,
                    "-m",
                    "tests.devkit.fake_kubelet",
                    "--kubeconfig",
                    str(self.directory / "kubeconfig"),
                    "--ready-delay",
                    str(self.ready_delay),
                ],
                cwd=REPO,
            )
            self._smoke_rollout(bins / "kubectl")
        except BaseException:
            self.down(remove=False)
            raise
        elapsed = time.monotonic() - started
        print(f"control plane up in {elapsed:.1f}s at {server}", file=sys.stderr)
        return ClusterInfo.load(self.directory)

    def down(self, *, remove: bool = True) -> None:
        pid_file = self.directory / "pids"
        if pid_file.exists():
            for line in pid_file.read_text().splitlines():
                name, _, pid_text = line.partition(" ")
                self.pids.setdefault(name, int(pid_text))
        # Reverse start order: the kubelet and controllers go before the apiserver and etcd.
        for _name, pid in reversed(list(self.pids.items())):
            _terminate(pid)
        etcd_dir_file = self.directory / "etcd-data-dir"
        if etcd_dir_file.exists():
            shutil.rmtree(etcd_dir_file.read_text().strip(), ignore_errors=True)
        self.pids.clear()
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------

    def _audit_flags(self) -> list[str]:
        """The API server's audit log, kept in the cluster directory: metadata of every write
        to a workload and of every access review (what the impersonation tests read). The
        controllers' status updates are writes too, but to subresources, which stay out."""
        policy = self.directory / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.directory / 'audit.log'}",
            "--audit-log-format=json",
            "--audit-log-maxsize=50",
            "--audit-log-maxbackup=1",
        ]

    def _spawn(self, name: str, argv: list[str], cwd: Path | None = None) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            ending_with_this_process(argv) if self.ends_with_caller else argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            # Own session: the processes outlive `make cluster-up` and ignore the shell's ^C.
            start_new_session=True,
        )
        log.close()
        self.pids[name] = proc.pid
        with open(self.directory / "pids", "a") as pid_file:
            pid_file.write(f"{name} {proc.pid}\n")

    def _wait(self, name: str, probe: object, timeout: float = STARTUP_TIMEOUT_S) -> None:
        assert callable(probe)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe():
                return
            pid = self.pids[name]
            if not _alive(pid):
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited during start-up:\n{tail}")
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready within {timeout:.0f}s; see {self.logs}/{name}.log")

    def _smoke_rollout(self, kubectl: Path) -> None:
        """Returns once a Deployment really rolls out: proves controllers and kubelet work."""
        kubeconfig = str(self.directory / "kubeconfig")
        manifest = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "smoke", "namespace": "default"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "smoke"}},
                "template": {
                    "metadata": {"labels": {"app": "smoke"}},
                    "spec": {"containers": [{"name": "smoke", "image": "smoke:1"}]},
                },
            },
        }
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            applied = subprocess.run(
                [str(kubectl), "--kubeconfig", kubeconfig, "apply", "-f", "-"],
                input=json.dumps(manifest),
                text=True,
                capture_output=True,
            )
            if applied.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot create the smoke Deployment: {applied.stderr}")
            time.sleep(0.5)
        subprocess.run(
            [
                str(kubectl),
                "--kubeconfig",
                kubeconfig,
                "rollout",
                "status",
                "deployment/smoke",
                "--timeout=120s",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                str(kubectl),
                "--kubeconfig",
                kubeconfig,
                "delete",
                "deployment",
                "smoke",
                "--wait=false",
            ],
            check=True,
            capture_output=True,
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _terminate(pid: int, grace: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print("usage: python -m tests.devkit.control_plane up|down DIR", file=sys.stderr)
        return 2
    verb, directory = argv[0], Path(argv[1])
    if verb == "up":
        if (directory / "cluster.json").exists() and ClusterInfo.load(directory).is_ready():
            print(f"already running: {directory / 'kubeconfig'}")
            return 0
        info = ControlPlane(directory).up()
        print(f"export KUBECONFIG={info.kubeconfig}")
        return 0
    ControlPlane(directory).down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
