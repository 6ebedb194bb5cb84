"""A one-node Kubernetes cluster on this machine whose node runs real containers.

`Cluster` starts, from the binaries tools/cluster/build.sh builds (the envtest control plane plus
kubelet, kube-proxy, CoreDNS, pause) and Debian's containerd, runc and CNI plugins:

- a bridge `infergraph0` with 10.88.0.1/16, the pod network's gateway and the only non-loopback
  address anything listens on: the API server (pods reach it through the `kubernetes` Service,
  10.96.0.1:443, so it must be an address a pod can route to) and CoreDNS (port 53, the pods'
  nameserver). The bridge exists only inside this machine;
- etcd, kube-controller-manager, kube-scheduler on 127.0.0.1, as tests/k8s/envtest.py runs them
  (the controllers a real cluster needs besides: EndpointSlices, for kube-proxy and CoreDNS);
- containerd (cgroupfs, overlayfs, our pause image as sandbox, the CNI bridge plugin with
  host-local IPAM on 10.88.0.0/16, loopback), its images imported from tools/cluster/images.py's
  archive; its root (image store) is cached across runs, its state is per run;
- kubelet (node `infergraph-node`, serving on 127.0.0.1, cluster DNS 10.88.0.1) and kube-proxy
  (iptables mode) for Service virtual IPs on 10.96.0.0/16; CoreDNS for cluster.local.

`stop()` deletes every pod through the API first (so kubelet tears their sandboxes and networks
down as usual), then stops the processes, removes what is left (tasks, network namespaces,
mounts, kube-proxy's rules, the bridge) and the run's directory. Needs root. Nothing here touches
pytest; tests/cluster/conftest.py holds the session fixture.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.k8s.envtest import EnvtestError, Process, free_port, kubeconfig, wait_until

CACHE = Path(os.environ.get("INFERGRAPH_CACHE", Path.home() / ".cache/infergraph"))
LOOPBACK = "127.0.0.1"
BRIDGE = "infergraph0"
POD_SUBNET = "10.88.0.0/16"
GATEWAY = "10.88.0.1"  # the bridge's address: API server and DNS for the pods
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"  # the first address of SERVICE_CIDR, in the serving cert
NODE_NAME = "infergraph-node"
CLUSTER_DOMAIN = "cluster.local"
CNI_BIN = "/usr/lib/cni"  # Debian's containernetworking-plugins
NETNS_DIR = Path("/var/run/netns")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
PAUSE_IMAGE = "localhost/infergraph/pause:1.31.4"  # tools/cluster/images.py's PAUSE_IMAGE
ISSUER = "https://kubernetes.default.svc.cluster.local"

CONTROLLERS = (
    "node-lifecycle-controller",
    "deployment-controller",
    "replicaset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    # kube-proxy and CoreDNS read EndpointSlices; Services without them route nowhere.
    "endpointslice-controller",
    "endpoints-controller",
    "pod-garbage-collector-controller",
    # Routers carry an HPA; with no metrics-server it still holds minReplicas..maxReplicas.
    "horizontal-pod-autoscaler-controller",
)

# Bounds for a loaded 2-core machine.
START_TIMEOUT = 90.0
NODE_READY_TIMEOUT = 120.0  # kubelet's first sync plus containerd's CNI config
DRAIN_TIMEOUT = 90.0  # every pod's containers stopped by kubelet
IMPORT_TIMEOUT = 600.0  # ctr reads the archive (about a GB) and unpacks every layer
COMMAND_TIMEOUT = 120.0


def _run(*argv: str | Path, timeout: float = COMMAND_TIMEOUT, check: bool = True) -> str:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise EnvtestError(
            f"{' '.join(str(a) for a in argv)} exited {result.returncode}:\n{result.stderr}"
        )
    return result.stdout


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def write_certificates(directory: Path) -> None:
    """ca.crt; apiserver.crt/.key valid for every address a client uses (127.0.0.1, the
    gateway, the `kubernetes` Service IP and its DNS names); sa.key/sa.pub."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "infergraph-cluster-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(ip))
        for ip in (LOOPBACK, GATEWAY, KUBERNETES_SERVICE_IP)
    ]
    names += [
        x509.DNSName(n)
        for n in (
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
        )
    ]
    serving_key = _key()
    serving = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # The API server's identity towards kubelet (logs, exec): a system:masters client cert.
    client_key = _key()
    client = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-kubelet-client"),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "kubelet-client.crt").write_bytes(client.public_bytes(serialization.Encoding.PEM))
    (directory / "kubelet-client.key").write_bytes(_pem(client_key))
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "apiserver.crt").write_bytes(serving.public_bytes(serialization.Encoding.PEM))
    (directory / "apiserver.key").write_bytes(_pem(serving_key))
    sa_key = _key()
    (directory / "sa.key").write_bytes(_pem(sa_key))
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _http_ok(url: str, context: ssl.SSLContext | None = None, token: str | None = None) -> bool:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Cluster:
    """The one-node cluster; `start()`/`stop()` or a context manager. Once started: `server`,
    `kubeconfig` (admin), `bin_dir`, `kubectl()`, `env()`."""

    def __init__(self, bin_dir: Path, images: Path) -> None:
        self.bin_dir = bin_dir
        self.images = images
        self.admin_token = os.urandom(16).hex()
        self.server = f"https://{GATEWAY}:{free_port()}"
        self._dir: Path | None = None
        self._processes: list[Process] = []
        self._netns_before: set[str] = set()

    @property
    def dir(self) -> Path:
        if self._dir is None:
            raise EnvtestError("cluster not started")
        return self._dir

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def containerd_socket(self) -> Path:
        return self.dir / "containerd.sock"

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> str:
        argv = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
        if check and result.returncode != 0:
            raise EnvtestError(
                f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
            )
        return result.stdout

    def ctr(self, *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True) -> str:
        return _run(
            "ctr",
            "--address",
            self.containerd_socket,
            "-n",
            "k8s.io",
            *args,
            timeout=timeout,
            check=check,
        )

    # --- start ---

    def start(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="infergraph-cluster-"))
        self._netns_before = set(os.listdir(NETNS_DIR)) if NETNS_DIR.exists() else set()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, argv: list[str | Path]) -> Process:
        process = Process(name, [str(a) for a in argv], self.dir / f"{name}.log")
        self._processes.append(process)
        return process

    def _wait(self, process: Process, what: str, check: Any, timeout: float) -> None:
        def ready() -> bool:
            if not process.alive():
                raise process.died()
            return bool(check())

        try:
            wait_until(what, ready, timeout)
        except EnvtestError as e:
            raise EnvtestError(f"{e}; last lines of {process.log}:\n{process.tail()}") from e

    def _start(self) -> None:
        d = self.dir
        self._network()
        write_certificates(d)
        (d / "tokens.csv").write_text(f'{self.admin_token},admin,admin,"system:masters"\n')
        config = json.dumps(kubeconfig(self.server, d / "ca.crt", self.admin_token, "admin"))
        self.kubeconfig.write_text(config)
        etcd = self._etcd()
        self._apiserver(etcd)
        self._controller_manager()
        self._spawn(
            "kube-scheduler",
            [
                self.bin_dir / "kube-scheduler",
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={free_port()}",
            ],
        )
        self._containerd()
        self._kubelet()
        self._kube_proxy()
        self._coredns()

    def _network(self) -> None:
        """The pod bridge with its gateway address, before anything binds to it."""
        if BRIDGE not in _run("ip", "-o", "link", "show"):
            _run("ip", "link", "add", BRIDGE, "type", "bridge")
        if GATEWAY not in _run("ip", "-o", "addr", "show", "dev", BRIDGE):
            _run("ip", "addr", "add", f"{GATEWAY}/16", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        # Pods' traffic to Service IPs and to the host crosses the host: forward it, and let
        # kube-proxy's iptables rules see bridged packets.
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        bridge_nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
        if bridge_nf.exists():
            bridge_nf.write_text("1\n")

    def _etcd(self) -> str:
        client, peer = f"http://{LOOPBACK}:{free_port()}", f"http://{LOOPBACK}:{free_port()}"
        etcd = self._spawn(
            "etcd",
            [
                self.bin_dir / "etcd",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync",
            ],
        )
        self._wait(etcd, "etcd", lambda: _http_ok(f"{client}/health"), START_TIMEOUT)
        return client

    def _apiserver(self, etcd: str) -> None:
        d = self.dir
        port = self.server.rpartition(":")[2]
        apiserver = self._spawn(
            "kube-apiserver",
            [
                self.bin_dir / "kube-apiserver",
                f"--etcd-servers={etcd}",
                f"--bind-address={GATEWAY}",
                f"--advertise-address={GATEWAY}",
                f"--secure-port={port}",
                f"--tls-cert-file={d / 'apiserver.crt'}",
                f"--tls-private-key-file={d / 'apiserver.key'}",
                f"--client-ca-file={d / 'ca.crt'}",
                f"--token-auth-file={d / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                f"--service-account-issuer={ISSUER}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                f"--cert-dir={d / 'apiserver-certs'}",
                "--profiling=false",
                # The node's name resolves nowhere on this machine; its address does.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={d / 'kubelet-client.crt'}",
                f"--kubelet-client-key={d / 'kubelet-client.key'}",
            ],
        )
        context = ssl.create_default_context(cafile=str(d / "ca.crt"))
        self._wait(
            apiserver,
            "kube-apiserver /readyz",
            lambda: _http_ok(f"{self.server}/readyz", context, self.admin_token),
            START_TIMEOUT,
        )

    def _controller_manager(self) -> None:
        config = self.kubeconfig
        kcm = self._spawn(
            "kube-controller-manager",
            [
                self.bin_dir / "kube-controller-manager",
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                "--leader-elect=false",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={self.dir / 'sa.key'}",
                f"--root-ca-file={self.dir / 'ca.crt'}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.dir / 'kcm-certs'}",
            ],
        )

        def default_account() -> bool:
            out = self.kubectl("get", "serviceaccount", "default", "-o", "name", check=False)
            return bool(out.strip())

        self._wait(
            kcm, "kube-controller-manager (ServiceAccount default)", default_account, START_TIMEOUT
        )

    def _containerd(self) -> None:
        d = self.dir
        cni = d / "cni"
        cni.mkdir()
        (cni / "10-infergraph.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "infergraph",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            # A pod calling a Service that lands on itself.
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(d / "ipam"),
                            },
                        }
                    ],
                }
            )
        )
        root = CACHE / "cluster" / "containerd"
        (d / "containerd.toml").write_text(
            f"""version = 2
root = "{root}"
state = "{d / "containerd-state"}"
[grpc]
  address = "{self.containerd_socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # kubelet asks for oom_score_adj -998 for sandboxes; lowering it needs CAP_SYS_RESOURCE,
  # which root here lacks (runc: "failed to update /proc/self/oom_score_adj: Permission
  # denied"). Clamp to containerd's own score instead, as for rootless containerd.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni}"
"""
        )
        containerd = self._spawn("containerd", ["containerd", f"--config={d / 'containerd.toml'}"])
        self._wait(
            containerd,
            "containerd",
            lambda: self.ctr("version", check=False) != "",
            START_TIMEOUT,
        )
        # Unchanged layers are already in the cached root: the import mostly re-reads the tar.
        self.ctr("images", "import", "--all-platforms", str(self.images), timeout=IMPORT_TIMEOUT)

    def _kubelet(self) -> None:
        d = self.dir
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # The node's address: kubelet refuses a loopback node IP.
            "address": GATEWAY,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": LOOPBACK,
            "healthzPort": free_port(),
            # Pods can reach this address: callers are authenticated (the API server by its
            # client certificate, others by token) and authorized by the API server.
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(d / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "clusterDNS": [GATEWAY],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": "",
            "failSwapOn": False,
            # The images exist only locally: never garbage-collect them, never evict for disk.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "serializeImagePulls": False,
            # kubelet's own iptables chains (KUBE-FIREWALL...) are not needed by kube-proxy.
            "makeIPTablesUtilChains": False,
            "staticPodPath": "",
            # Container logs with the run, not in /var/log/pods.
            "podLogsDir": str(d / "pod-logs"),
        }
        (d / "kubelet.yaml").write_text(json.dumps(config))
        kubelet = self._spawn(
            "kubelet",
            [
                self.bin_dir / "kubelet",
                f"--config={d / 'kubelet.yaml'}",
                f"--kubeconfig={self.kubeconfig}",
                f"--root-dir={d / 'kubelet'}",
                f"--cert-dir={d / 'kubelet-pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={GATEWAY}",
            ],
        )

        def node_ready() -> bool:
            out = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
            if not out:
                return False
            node = json.loads(out)
            conditions = node.get("status", {}).get("conditions", [])
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            return ready and not node["spec"].get("taints")

        self._wait(kubelet, f"node {NODE_NAME} Ready and untainted", node_ready, NODE_READY_TIMEOUT)

    def _kube_proxy(self) -> None:
        d = self.dir
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self.kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_SUBNET,
            "bindAddress": LOOPBACK,
            "healthzBindAddress": f"{LOOPBACK}:{free_port()}",
            "metricsBindAddress": f"{LOOPBACK}:{free_port()}",
            # Leave the machine's conntrack sysctls alone (a VM may refuse writes to them).
            "conntrack": {"maxPerCore": 0},
        }
        (d / "kube-proxy.yaml").write_text(json.dumps(config))
        self._spawn(
            "kube-proxy", [self.bin_dir / "kube-proxy", f"--config={d / 'kube-proxy.yaml'}"]
        )

    def _coredns(self) -> None:
        d = self.dir
        health, ready = free_port(), free_port()
        (d / "Corefile").write_text(
            f""".:53 {{
    bind {GATEWAY}
    ready {LOOPBACK}:{ready}
    health {LOOPBACK}:{health}
    errors
    cache 5
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {self.kubeconfig} admin
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
}}
"""
        )
        coredns = self._spawn("coredns", [self.bin_dir / "coredns", "-conf", d / "Corefile"])
        self._wait(
            coredns,
            "CoreDNS /ready",
            lambda: _http_ok(f"http://{LOOPBACK}:{ready}/ready"),
            START_TIMEOUT,
        )

    # --- stop ---

    def stop(self) -> None:
        if self._dir is None:
            return
        by_name = {p.name: p for p in self._processes}
        with contextlib.suppress(Exception):
            self._drain_pods(by_name)
        for process in reversed(self._processes):
            if process.name != "containerd":
                process.stop()
        if "containerd" in by_name and by_name["containerd"].alive():
            with contextlib.suppress(Exception):
                self._remove_containers()
            by_name["containerd"].stop()
        self._processes.clear()
        self._clean_host()
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    def _drain_pods(self, by_name: dict[str, Process]) -> None:
        """Stop the controllers that recreate pods, delete every pod, let kubelet stop them."""
        if "kubelet" not in by_name or not by_name["kubelet"].alive():
            return
        by_name["kube-controller-manager"].stop()
        self.kubectl(
            "delete",
            "pods",
            "--all",
            "--all-namespaces",
            "--grace-period=1",
            "--wait=false",
            check=False,
        )

        def stopped() -> bool:
            tasks = self.ctr("tasks", "ls", check=False).splitlines()[1:]
            return all("RUNNING" not in line for line in tasks)

        with contextlib.suppress(EnvtestError):
            wait_until("pods stopped by kubelet", stopped, DRAIN_TIMEOUT)

    def _remove_containers(self) -> None:
        for line in self.ctr("tasks", "ls", "-q", check=False).split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", line, check=False)
        time.sleep(1)  # SIGKILL is asynchronous; a task is deletable once it has exited
        for line in self.ctr("tasks", "ls", "-q", check=False).split():
            self.ctr("tasks", "delete", "-f", line, check=False)
        for line in self.ctr("containers", "ls", "-q", check=False).split():
            self.ctr("containers", "delete", line, check=False)

    def _clean_host(self) -> None:
        if NETNS_DIR.exists():
            for name in set(os.listdir(NETNS_DIR)) - self._netns_before:
                _run("ip", "netns", "delete", name, check=False)
        mounts = [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(self.dir))
        ]
        for mount in sorted(mounts, key=len, reverse=True):
            _run("umount", "-l", mount, check=False)
        # kubelet links every container's log here, whatever podLogsDir says.
        for link in CONTAINER_LOG_LINKS.glob("*.log"):
            if link.is_symlink() and str(link.readlink()).startswith(str(self.dir)):
                link.unlink()
        if (self.bin_dir / "kube-proxy").exists():
            _run(self.bin_dir / "kube-proxy", "--cleanup", check=False)
        _remove_kube_chains()
        _remove_pod_cgroups()
        _run("ip", "link", "delete", BRIDGE, check=False)


def _remove_kube_chains() -> None:
    """The KUBE-* chains `kube-proxy --cleanup` leaves (its canaries, kubelet's)."""
    for command in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            rules = _run(command, "-t", table, "-S", check=False).splitlines()
            for rule in rules:
                if (
                    rule.startswith("-A ")
                    and "KUBE-" in rule
                    and not rule.split()[1].startswith("KUBE-")
                ):
                    _run(command, "-t", table, "-D", *rule.split()[1:], check=False)
            for rule in rules:
                if rule.startswith("-N KUBE-"):
                    _run(command, "-t", table, "-F", rule.split()[1], check=False)
            for rule in rules:
                if rule.startswith("-N KUBE-"):
                    _run(command, "-t", table, "-X", rule.split()[1], check=False)


def _remove_pod_cgroups() -> None:
    """kubelet's kubepods hierarchy in every cgroup v1 controller, deepest first (empty by now:
    every container has been removed)."""
    for controller in Path("/sys/fs/cgroup").iterdir():
        top = controller / "kubepods"
        if not top.is_dir():
            continue
        directories = [Path(p) for p, _, _ in os.walk(top)]
        for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
