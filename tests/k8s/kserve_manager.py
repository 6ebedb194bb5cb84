"""KServe's own controller (cmd/manager, built by tools/kserve/build.sh) as a subprocess against
the envtest control plane, with its webhooks registered against the API server.

The manager always starts its webhook server and reads the serving certificate from
`$TMPDIR/k8s-webhook-server/serving-certs/` (controller-runtime's default), so we give it a
TMPDIR of our own holding a throwaway certificate for 127.0.0.1, signed by a throwaway CA
whose bundle goes into the webhook configurations. The configurations call it by URL
(`https://127.0.0.1:PORT/...`) and are limited by namespaceSelector to the namespaces labelled
`SIDE_LABEL=kserve`, so the defaulting, validation and pod mutation (storage-initializer
injection) happen to KServe's side only, as they would in a KServe installation.

Its `inferenceservice-config` ConfigMap is built here from the keys KServe documents
(config/configmap/inferenceservice.yaml), in RawDeployment mode without Istio, Knative or an
Ingress.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from graph_controller.controller.render import ROUTER_IMAGE, STORAGE_INITIALIZER_IMAGE
from tests.k8s.envtest import LOOPBACK, REPO, ControlPlane, free_port, wait_until

KSERVE_VERSION = "0.15.2"
HOME_ENV = "INFERGRAPH_KSERVE_HOME"
DEFAULT_HOME = Path.home() / ".cache/infergraph" / f"kserve-manager-{KSERVE_VERSION}"
BUILD = REPO / "tools" / "kserve" / "build.sh"
KSERVE_NAMESPACE = "kserve"  # where the manager looks for its ConfigMap ($POD_NAMESPACE)
SIDE_LABEL = "oracle.infergraph.dev/side"
START_TIMEOUT = 60.0  # caches of ~15 kinds; a few seconds unloaded
STOP_TIMEOUT = 15.0
WEBHOOK_NAME = "oracle-kserve"
# Images are configuration, not behaviour: KServe's side is configured with the ones our
# controller uses by default, so an image differing is a real difference of the two.
STORAGE_INITIALIZER = STORAGE_INITIALIZER_IMAGE


def kserve_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME)


def missing(home: Path) -> str | None:
    """Why KServe's build at `home` cannot be used, or None."""
    if not os.access(home / "bin" / "manager", os.X_OK):
        return f"{home / 'bin' / 'manager'} missing"
    if not all((home / d / ".complete").exists() for d in ("crd", "runtimes")):
        return f"KServe's CRDs or runtimes missing from {home}"
    return None


def inferenceservice_config() -> dict[str, Any]:
    """The ConfigMap KServe's manager and webhooks read, from its documented keys with KServe's
    defaults, except: RawDeployment, no Istio VirtualService, no Ingress object, and our
    router and storage-initializer images."""

    def js(value: dict[str, Any]) -> str:
        return json.dumps(value, indent=2)

    data = {
        "storageInitializer": js(
            {
                "image": STORAGE_INITIALIZER,
                "memoryRequest": "100Mi",
                "memoryLimit": "1Gi",
                "cpuRequest": "100m",
                "cpuLimit": "1",
                "caBundleConfigMapName": "",
                "caBundleVolumeMountPath": "/etc/ssl/custom-certs",
                "enableDirectPvcVolumeMount": True,
                "enableModelcar": True,
                "cpuModelcar": "10m",
                "memoryModelcar": "15Mi",
                "uidModelcar": 1010,
            }
        ),
        "credentials": js(
            {
                "storageSpecSecretName": "storage-config",
                "storageSecretNameAnnotation": "serving.kserve.io/storageSecretName",
                "gcs": {"gcsCredentialFileName": "gcloud-application-credentials.json"},
                "s3": {
                    "s3AccessKeyIDName": "AWS_ACCESS_KEY_ID",
                    "s3SecretAccessKeyName": "AWS_SECRET_ACCESS_KEY",
                },
            }
        ),
        "ingress": js(
            {
                "enableGatewayApi": False,
                "kserveIngressGateway": "kserve/kserve-ingress-gateway",
                "ingressGateway": "knative-serving/knative-ingress-gateway",
                "localGateway": "knative-serving/knative-local-gateway",
                "localGatewayService": "knative-local-gateway.istio-system.svc.cluster.local",
                "ingressDomain": "example.com",
                "ingressClassName": "istio",
                "domainTemplate": "{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}",
                "urlScheme": "http",
                "disableIstioVirtualHost": True,
                "disableIngressCreation": True,
            }
        ),
        "logger": js(
            {
                "image": "kserve/agent:v0.15.2",
                "memoryRequest": "100Mi",
                "memoryLimit": "1Gi",
                "cpuRequest": "100m",
                "cpuLimit": "1",
                "defaultUrl": "http://default-broker",
            }
        ),
        "batcher": js(
            {
                "image": "kserve/agent:v0.15.2",
                "memoryRequest": "1Gi",
                "memoryLimit": "1Gi",
                "cpuRequest": "1",
                "cpuLimit": "1",
                "maxBatchSize": "32",
                "maxLatency": "5000",
            }
        ),
        "agent": js(
            {
                "image": "kserve/agent:v0.15.2",
                "memoryRequest": "100Mi",
                "memoryLimit": "1Gi",
                "cpuRequest": "100m",
                "cpuLimit": "1",
            }
        ),
        "router": js(
            {
                "image": ROUTER_IMAGE,
                "memoryRequest": "100Mi",
                "memoryLimit": "1Gi",
                "cpuRequest": "100m",
                "cpuLimit": "1",
                "imagePullPolicy": "IfNotPresent",
            }
        ),
        "deploy": js({"defaultDeploymentMode": "RawDeployment"}),
        "metricsAggregator": js(
            {"enableMetricAggregation": "false", "enablePrometheusScraping": "false"}
        ),
        "localModel": js(
            {
                "enabled": False,
                "jobNamespace": "kserve-localmodel-jobs",
                "defaultJobImage": STORAGE_INITIALIZER,
                "fsGroup": 1000,
            }
        ),
        "security": js({"autoMountServiceAccountToken": True}),
        "inferenceService": js(
            {
                "resource": {
                    "cpuLimit": "1",
                    "memoryLimit": "2Gi",
                    "cpuRequest": "1",
                    "memoryRequest": "2Gi",
                }
            }
        ),
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config", "namespace": KSERVE_NAMESPACE},
        "data": data,
    }


def default_storage_container(home: Path) -> dict[str, Any]:
    """KServe's default ClusterStorageContainer (config/storagecontainers), which its pod
    webhook consults for the storage-initializer of gs://, s3://, hf://, http(s):// URIs, with
    the storage-initializer image of the ConfigMap."""
    container: dict[str, Any] = yaml.safe_load(
        (home / "runtimes" / "storagecontainer-default.yaml").read_text()
    )
    container["spec"]["container"]["image"] = STORAGE_INITIALIZER
    return container


# --- webhook certificates and configurations ----------------------------------------------


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_webhook_certificate(cert_dir: Path) -> bytes:
    """A CA and a serving certificate for 127.0.0.1 as tls.crt/tls.key in `cert_dir`; returns
    the CA's PEM for the webhook configurations' caBundle."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)
    ca_key, key = _key(), _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oracle-webhook-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    serving = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kserve-webhook")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_dir.mkdir(parents=True, exist_ok=True)
    (cert_dir / "tls.crt").write_bytes(serving.public_bytes(serialization.Encoding.PEM))
    (cert_dir / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM)


def _hook(
    name: str, port: int, path: str, ca: bytes, group: str, version: str, resource: str
) -> dict[str, Any]:
    return {
        "name": name,
        "clientConfig": {
            "url": f"https://{LOOPBACK}:{port}{path}",
            "caBundle": base64.b64encode(ca).decode(),
        },
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1", "v1beta1"],
        "timeoutSeconds": 10,
        # Cluster-scoped objects (ClusterServingRuntimes) are not subject to this selector.
        "namespaceSelector": {"matchLabels": {SIDE_LABEL: "kserve"}},
        "rules": [
            {
                "apiGroups": [group],
                "apiVersions": [version],
                "operations": ["CREATE", "UPDATE"],
                "resources": [resource],
            }
        ],
    }


def webhook_configurations(port: int, ca: bytes) -> list[dict[str, Any]]:
    """KServe's config/webhook/manifests.yaml, pointed at the manager by URL and limited to
    KServe's side: the InferenceService defaulter and the pod mutator; the validators of
    InferenceServices, InferenceGraphs and (cluster) serving runtimes."""
    group = "serving.kserve.io"
    pods = _hook(
        "inferenceservice.kserve-webhook-server.pod-mutator", port, "/mutate-pods", ca,
        "", "v1", "pods",
    )  # fmt: skip
    pods["rules"][0]["operations"] = ["CREATE"]
    pods["reinvocationPolicy"] = "IfNeeded"
    pods["objectSelector"] = {
        "matchExpressions": [{"key": "serving.kserve.io/inferenceservice", "operator": "Exists"}]
    }
    mutating = [
        _hook(
            "inferenceservice.kserve-webhook-server.defaulter", port,
            "/mutate-serving-kserve-io-v1beta1-inferenceservice", ca,
            group, "v1beta1", "inferenceservices",
        ),
        pods,
    ]  # fmt: skip
    validating = [
        _hook(
            "inferenceservice.kserve-webhook-server.validator", port,
            "/validate-serving-kserve-io-v1beta1-inferenceservice", ca,
            group, "v1beta1", "inferenceservices",
        ),
        _hook(
            "inferencegraph.kserve-webhook-server.validator", port,
            "/validate-serving-kserve-io-v1alpha1-inferencegraph", ca,
            group, "v1alpha1", "inferencegraphs",
        ),
        _hook(
            "servingruntime.kserve-webhook-server.validator", port,
            "/validate-serving-kserve-io-v1alpha1-servingruntime", ca,
            group, "v1alpha1", "servingruntimes",
        ),
        _hook(
            "clusterservingruntime.kserve-webhook-server.validator", port,
            "/validate-serving-kserve-io-v1alpha1-clusterservingruntime", ca,
            group, "v1alpha1", "clusterservingruntimes",
        ),
    ]  # fmt: skip
    api = "admissionregistration.k8s.io/v1"
    return [
        {
            "apiVersion": api,
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": WEBHOOK_NAME},
            "webhooks": mutating,
        },
        {
            "apiVersion": api,
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": WEBHOOK_NAME},
            "webhooks": validating,
        },
    ]


# --- the process ----------------------------------------------------------------------------


class KServeManager:
    """KServe's manager on 127.0.0.1 ports (metrics, probes) and a webhook port, acting as the
    control plane's admin, its log in `directory`/kserve-manager.log."""

    def __init__(self, plane: ControlPlane, home: Path, directory: Path) -> None:
        self.plane = plane
        tmp = directory / "kserve-tmp"
        # controller-runtime's default certificate directory is under os.TempDir(), i.e. $TMPDIR.
        self.ca = write_webhook_certificate(tmp / "k8s-webhook-server" / "serving-certs")
        self.webhook_port, self.probe_port = free_port(), free_port()
        self.log = directory / "kserve-manager.log"
        self._log_file = self.log.open("ab")
        self.popen = subprocess.Popen(
            [
                str(home / "bin" / "manager"),
                f"--metrics-addr={LOOPBACK}:{free_port()}",
                f"--health-probe-addr={LOOPBACK}:{self.probe_port}",
                # The webhook server has no host flag: it listens on every interface, on a free
                # port; nothing but the API server on 127.0.0.1 is told of it.
                f"--webhook-port={self.webhook_port}",
                "--leader-elect=false",
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env={
                **plane.env(),
                "TMPDIR": str(tmp),
                "POD_NAMESPACE": KSERVE_NAMESPACE,
            },
            start_new_session=True,
        )

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def _ready(self) -> bool:
        if not self.alive():
            raise AssertionError(f"KServe's manager exited {self.popen.returncode}:\n{self.tail()}")
        try:
            url = f"http://{LOOPBACK}:{self.probe_port}/readyz"
            with urllib.request.urlopen(url, timeout=1) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self) -> None:
        try:
            wait_until("KServe's manager /readyz", self._ready, START_TIMEOUT)
        except RuntimeError as e:
            raise AssertionError(f"{e}\n{self.tail()}") from e

    def register_webhooks(self) -> None:
        for configuration in webhook_configurations(self.webhook_port, self.ca):
            self.plane.kubectl("apply", "-f", "-", input=json.dumps(configuration))

    def unregister_webhooks(self) -> None:
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            self.plane.kubectl("delete", kind, WEBHOOK_NAME, "--ignore-not-found")

    def stop(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(STOP_TIMEOUT)
        self._log_file.close()
