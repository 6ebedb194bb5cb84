"""A real Kubernetes control plane for tests, the way controller-runtime's envtest runs one.

`ControlPlane` starts, on 127.0.0.1 with free ports and one temp dir, the binaries that
tools/envtest/build.sh builds from Go sources: etcd; kube-apiserver (TLS with a throwaway CA,
an admin bearer token in system:masters, Node+RBAC authorization, a service-account signing key
so ServiceAccount tokens and the TokenRequest API work); kube-controller-manager (Deployments
make ReplicaSets make Pods; namespaces and ServiceAccounts are managed); kube-scheduler (Pods
get a node); and KWOK with one fake Node, which plays the kubelet so Pods become Running and
Ready. `stop()` ends every process and removes the temp dir. tests/k8s/conftest.py holds the
session fixture; nothing here touches pytest.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

K8S_VERSION = "1.31.4"
ETCD_VERSION = "3.5.17"
BIN_ENV = "INFERGRAPH_ENVTEST_BIN"
DEFAULT_BIN_DIR = (
    Path.home() / ".cache/infergraph" / f"envtest-k8s-{K8S_VERSION}-etcd-{ETCD_VERSION}" / "bin"
)
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
)
REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
NODE_NAME = "kwok-node-0"
# The API server's in-cluster name; ServiceAccount tokens carry it as issuer and audience.
ISSUER = "https://kubernetes.default.svc.cluster.local"
# Virtual IPs that exist only as API objects: nothing routes or sends traffic to them.
SERVICE_CIDR = "10.0.0.0/16"  # virtual; /16 so a scale run (2 Services per graph) fits
POD_CIDR = "127.1.0.0/16"

# Audit ServiceAccounts only: the control plane's own components act as admin and stay out.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        {"level": "None"},
    ],
}

# Bounds, generous for a loaded 2-core machine; a healthy start takes a few seconds in all.
ETCD_READY_TIMEOUT = 30.0
APISERVER_READY_TIMEOUT = 90.0  # cold start: post-start hooks bootstrap RBAC and priority levels
CONTROLLERS_READY_TIMEOUT = 60.0  # the default ServiceAccount appears once KCM's caches sync
NODE_READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0  # SIGTERM, then SIGKILL
NODE_MONITOR_GRACE = "1h"  # see _start_controller_manager
KUBECTL_TIMEOUT = 120.0
CRD_TIMEOUT = 60.0  # Established follows the CRD's name check, normally within a second
POLL_INTERVAL = 0.1

# kube-controller-manager's controllers this project relies on: Deployments → ReplicaSets → Pods,
# owner-reference cleanup, namespace deletion, default ServiceAccounts and their CA bundle, and
# node lifecycle, which lifts the not-ready taint the API server puts on a new Node.
CONTROLLERS = (
    "node-lifecycle-controller",
    "deployment-controller",
    "replicaset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)


class EnvtestError(RuntimeError):
    """The control plane could not start or answer; the message says which part and why."""


class MissingBinaries(EnvtestError):
    pass


def bin_dir_from_env() -> Path:
    return Path(os.environ.get(BIN_ENV) or DEFAULT_BIN_DIR)


def missing_binaries(bin_dir: Path) -> list[str]:
    return [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll `check` until it is true; raise EnvtestError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(POLL_INTERVAL)
    raise EnvtestError(f"{what}: not ready after {timeout:.0f}s")


# --- certificates -------------------------------------------------------------------------


def _private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def write_certificates(directory: Path) -> None:
    """Write ca.crt, a serving cert apiserver.crt/.key for 127.0.0.1, and sa.key/sa.pub."""
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))
    ca_key = _private_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "infergraph-envtest-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    serving_key = _private_key()
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes.default.svc"),
    ]
    serving = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "apiserver.crt").write_bytes(serving.public_bytes(serialization.Encoding.PEM))
    (directory / "apiserver.key").write_bytes(_pem_key(serving_key))
    sa_key = _private_key()
    (directory / "sa.key").write_bytes(_pem_key(sa_key))
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def kubeconfig(server: str, ca_file: Path, token: str, user: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "envtest",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "envtest", "user": user}}],
        "current-context": user,
    }


# --- processes ----------------------------------------------------------------------------


class Process:
    """One control-plane binary, its output in a log file, stopped by `stop()`."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            # A session of its own, so a stop signal reaches the binary and nothing it forks.
            self.popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def died(self) -> EnvtestError:
        return EnvtestError(
            f"{self.name} exited with status {self.popen.returncode}; last lines of "
            f"{self.log}:\n{self.tail()}"
        )

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(STOP_TIMEOUT)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + KWOK on 127.0.0.1.

    Use as a context manager, or call `start()` and `stop()`. Attributes once started:
    `server` (https URL), `admin_token`, `ca_file`, `kubeconfig` (admin), `bin_dir`, `node_name`.
    """

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or bin_dir_from_env()
        missing = missing_binaries(self.bin_dir)
        if missing:
            raise MissingBinaries(
                f"envtest binaries missing from {self.bin_dir}: {', '.join(missing)}; "
                f"run `make envtest` (tools/envtest/build.sh), or point {BIN_ENV} at them"
            )
        self.node_name = NODE_NAME
        self.admin_token = os.urandom(16).hex()
        self._dir: Path | None = None
        self._processes: list[Process] = []
        self._admin: Any = None
        self.server = ""

    # --- paths ---

    @property
    def dir(self) -> Path:
        if self._dir is None:
            raise EnvtestError("control plane not started")
        return self._dir

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.dir / "audit.log"

    def audit_events(self, username: str) -> list[dict[str, Any]]:
        """The API server's audit events (stage ResponseComplete) for requests by `username`,
        a ServiceAccount (`system:serviceaccount:NS:NAME`); each has verb, objectRef,
        responseStatus.code. An event may land just after its response: poll for it."""
        events = []
        with self.audit_log.open() as log:
            for line in log:
                event = json.loads(line)
                if event["user"]["username"] == username and event["stage"] == "ResponseComplete":
                    events.append(event)
        return events

    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG (admin), for subprocesses that talk to this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    # --- lifecycle ---

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="infergraph-envtest-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        # Reverse order: clients first, etcd last, so nothing logs a lost connection for long.
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _spawn(self, name: str, *args: str) -> Process:
        process = Process(name, [str(self.bin_dir / name), *args], self.dir / f"{name}.log")
        self._processes.append(process)
        return process

    def _wait(self, process: Process, what: str, check: Callable[[], bool], timeout: float) -> None:
        def ready() -> bool:
            if not process.alive():
                raise process.died()
            return check()

        try:
            wait_until(what, ready, timeout)
        except EnvtestError as e:
            if process.alive():
                raise EnvtestError(f"{e}; last lines of {process.log}:\n{process.tail()}") from e
            raise

    def _start(self) -> None:
        d = self.dir
        write_certificates(d)
        (d / "tokens.csv").write_text(f'{self.admin_token},admin,admin,"system:masters"\n')
        etcd_url = self._start_etcd()
        self._start_apiserver(etcd_url)
        system = d / "system.kubeconfig"  # the other components act as admin too
        system.write_text(
            json.dumps(kubeconfig(self.server, self.ca_file, self.admin_token, "admin"))
        )
        self.kubeconfig.write_text(system.read_text())
        self._start_controller_manager(system)
        self._start_scheduler(system)
        self._start_kwok(system)

    def _start_etcd(self) -> str:
        client, peer = f"http://{LOOPBACK}:{free_port()}", f"http://{LOOPBACK}:{free_port()}"
        etcd = self._spawn(
            "etcd",
            f"--data-dir={self.dir / 'etcd'}",
            "--name=envtest",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=envtest={peer}",
            # Test data is thrown away: skipping fsync makes writes (and so startup) fast.
            "--unsafe-no-fsync",
        )
        self._wait(etcd, "etcd", lambda: _http_ok(f"{client}/health"), ETCD_READY_TIMEOUT)
        return client

    def _start_apiserver(self, etcd_url: str) -> None:
        d, port = self.dir, free_port()
        (d / "audit-policy.yaml").write_text(json.dumps(AUDIT_POLICY))
        self.server = f"https://{LOOPBACK}:{port}"
        apiserver = self._spawn(
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={port}",
            f"--tls-cert-file={d / 'apiserver.crt'}",
            f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={self.ca_file}",
            f"--token-auth-file={d / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--service-account-issuer={ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # The `kubernetes` Service would point at 127.0.0.1, which Endpoints reject.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={d / 'apiserver-certs'}",
            "--profiling=false",
            # Every ServiceAccount's request, so RBAC tests can list what a component really did.
            f"--audit-policy-file={d / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
        )
        context = ssl.create_default_context(cafile=str(self.ca_file))
        self._wait(
            apiserver,
            "kube-apiserver /readyz",
            lambda: _http_ok(f"{self.server}/readyz", context, self.admin_token),
            APISERVER_READY_TIMEOUT,
        )

    def _start_controller_manager(self, config: Path) -> None:
        kcm = self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={config}",
            f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}",
            "--leader-elect=false",
            f"--controllers={','.join(CONTROLLERS)}",
            # KWOK's heartbeat for the fake node can come >40 s apart on a loaded machine; with
            # the default grace the node flaps to NotReady and KCM marks every Pod on it
            # NotReady for good (KWOK does not set them Ready again). The node cannot die.
            f"--node-monitor-grace-period={NODE_MONITOR_GRACE}",
            f"--service-account-private-key-file={self.dir / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={free_port()}",
            f"--cert-dir={self.dir / 'kcm-certs'}",
        )
        core = self._core()
        self._wait(
            kcm,
            "kube-controller-manager (ServiceAccount default/default)",
            lambda: _exists(lambda: core.read_namespaced_service_account("default", "default")),
            CONTROLLERS_READY_TIMEOUT,
        )

    def _start_scheduler(self, config: Path) -> None:
        self._spawn(
            "kube-scheduler",
            f"--kubeconfig={config}",
            f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}",
            "--leader-elect=false",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={free_port()}",
            f"--cert-dir={self.dir / 'scheduler-certs'}",
        )

    def _start_kwok(self, config: Path) -> None:
        config_file = self.dir / "kwok.yaml"
        config_file.write_text(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions: {}\n"
        )
        kwok = self._spawn(
            "kwok",
            f"--kubeconfig={config}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--node-ip={LOOPBACK}",
            # Fake Pod IPs on loopback: anything that dials one stays on this machine.
            f"--cidr={POD_CIDR}",
            # Our own (empty) config, so a ~/.kwok/kwok.yaml cannot change the default stages.
            f"--config={config_file}",
        )
        core = self._core()
        core.create_node(_fake_node(self.node_name))

        def node_ready() -> bool:
            node = core.read_node(self.node_name)
            conditions = node.status.conditions or []
            ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
            return ready and not (node.spec.taints or [])

        self._wait(
            kwok, f"KWOK node {self.node_name} Ready and untainted", node_ready, NODE_READY_TIMEOUT
        )

    # --- clients ---

    def api_client(self) -> Any:
        """A kubernetes.client.ApiClient acting as the admin; close it when done."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.server
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.api_key = {"authorization": f"Bearer {self.admin_token}"}
        return client.ApiClient(configuration)

    def _core(self) -> Any:
        """The admin CoreV1Api this object uses itself; closed by `stop()`."""
        from kubernetes import client

        if self._admin is None:
            self._admin = self.api_client()
        return client.CoreV1Api(self._admin)

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl as the admin (or `kubeconfig`); raise on failure if `check`."""
        argv = [
            str(self.bin_dir / "kubectl"),
            f"--kubeconfig={kubeconfig or self.kubeconfig}",
            *args,
        ]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=KUBECTL_TIMEOUT, check=False
        )
        if check and result.returncode != 0:
            raise EnvtestError(
                f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
            )
        return result

    def install_crds(self, directory: Path = REPO / "config" / "crd") -> None:
        """Apply the CRDs (server-side: InferenceService's is too big for the last-applied
        annotation) and wait until each is Established."""
        applied = self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-o", "name", "-k", str(directory)
        )
        names = applied.stdout.split()
        self.kubectl("wait", "--for=condition=Established", f"--timeout={CRD_TIMEOUT:.0f}s", *names)

    def service_account_kubeconfig(
        self, namespace: str, name: str, expiration_seconds: int = 3600
    ) -> Path:
        """A kubeconfig acting as ServiceAccount namespace/name, from a TokenRequest."""
        from kubernetes import client

        with self.api_client() as api:
            request = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(
                    audiences=[ISSUER], expiration_seconds=expiration_seconds
                )
            )
            answer = client.CoreV1Api(api).create_namespaced_service_account_token(
                name, namespace, request
            )
        if answer.status is None or not answer.status.token:
            raise EnvtestError(f"TokenRequest for {namespace}/{name} returned no token")
        token: str = answer.status.token
        path = self.dir / f"sa-{namespace}-{name}.kubeconfig"
        user = f"system:serviceaccount:{namespace}:{name}"
        path.write_text(json.dumps(kubeconfig(self.server, self.ca_file, token, user)))
        return path

    def processes(self) -> Iterator[Process]:
        return iter(self._processes)


def _http_ok(url: str, context: ssl.SSLContext | None = None, token: str | None = None) -> bool:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _exists(read: Callable[[], object]) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        read()
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def _fake_node(name: str) -> dict[str, Any]:
    """A Node that KWOK (selected by annotation) keeps Ready and whose Pods it runs."""
    # Pods cost nothing here (KWOK runs none): room for a scale run of 500 graphs, each
    # predictor asking KServe's default 1 CPU and 2Gi (its webhook's, which ours applies too)
    # and each router 100m and 100Mi.
    capacity = {"cpu": "1000", "memory": "4Ti", "pods": "2000"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {"capacity": capacity, "allocatable": capacity},
    }
