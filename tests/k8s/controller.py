"""Running the controller as a real subprocess against the envtest control plane, and the
objects and bounded waits the controller tests share."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.k8s.envtest import REPO, ControlPlane, free_port

START_TIMEOUT = 30.0  # import + first list of 7 resources; seconds even on a loaded machine
CONVERGE_TIMEOUT = 60.0  # controller + KCM + scheduler + KWOK: a few seconds unloaded
STOP_TIMEOUT = 15.0
POLL = 0.1


class ControllerProcess:
    """`python -m graph_controller controller ...`, its JSON log lines captured to a file."""

    def __init__(
        self,
        plane: ControlPlane,
        log: Path,
        *args: str,
        kubeconfig: Path | None = None,
        leader_elect: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.health_port = free_port()
        argv = [
            sys.executable,
            "-m",
            "graph_controller",
            "controller",
            f"--kubeconfig={kubeconfig or plane.kubeconfig}",
            "--health-host=127.0.0.1",
            f"--health-port={self.health_port}",
            "--leader-elect" if leader_elect else "--no-leader-elect",
            *args,
        ]
        self.log = log
        self._log_file = log.open("ab")
        self.popen = subprocess.Popen(
            argv,
            cwd=REPO,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env or {**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.log.read_text().splitlines():
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                out.append({"msg": raw, "level": "RAW"})
        return out

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text().splitlines()[-n:])

    def probe(self, path: str) -> int:
        """HTTP status of GET `path` on the health port (0: not answering)."""
        import urllib.error
        import urllib.request

        try:
            url = f"http://127.0.0.1:{self.health_port}{path}"
            with urllib.request.urlopen(url, timeout=1) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except (urllib.error.URLError, OSError):
            return 0

    def ready(self) -> bool:
        return self.probe("/readyz") == 200

    def wait_ready(self) -> None:
        wait_for("controller /readyz", self.ready, START_TIMEOUT, self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait(STOP_TIMEOUT)
        self._log_file.close()
        return code

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait(STOP_TIMEOUT)
        self._log_file.close()


@contextmanager
def running(
    plane: ControlPlane, log: Path, *args: str, **kwargs: Any
) -> Iterator[ControllerProcess]:
    process = ControllerProcess(plane, log, *args, **kwargs)
    try:
        yield process
    finally:
        if process.alive():
            code = process.terminate()
            assert code == 0, f"controller exited {code} on SIGTERM:\n{process.tail()}"


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float = CONVERGE_TIMEOUT,
    controller: ControllerProcess | None = None,
    describe: Callable[[], str] | None = None,
) -> Any:
    """Poll `check` until truthy and return its value; on timeout fail naming `what`, with the
    controller's last log lines and whatever `describe` says about the current state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if controller is not None and not controller.alive():
            raise AssertionError(f"controller died waiting for {what}:\n{controller.tail()}")
        time.sleep(POLL)
    detail = describe() if describe else ""
    logs = f"\ncontroller log:\n{controller.tail()}" if controller else ""
    raise AssertionError(f"{what}: not true after {timeout:.0f}s. {detail}{logs}")


# --- objects ---------------------------------------------------------------------------------


def isvc(name: str, max_replicas: int | None = None) -> dict[str, Any]:
    """A custom-container InferenceService: needs no serving runtime."""
    predictor: dict[str, Any] = {
        "containers": [{"name": "kserve-container", "image": f"example.invalid/{name}:1"}]
    }
    if max_replicas is not None:
        predictor["minReplicas"] = 1
        predictor["maxReplicas"] = max_replicas
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": predictor},
    }


def graph(
    name: str, services: Sequence[str], api_version: str = "serving.kserve.io/v1alpha1"
) -> dict[str, Any]:
    steps = [{"name": s, "serviceName": s} for s in services]
    return {
        "apiVersion": api_version,
        "kind": "InferenceGraph",
        "metadata": {"name": name},
        "spec": {"nodes": {"root": {"routerType": "Sequence", "steps": steps}}},
    }


class Cluster:
    """Admin access for assertions: custom objects and owned objects as plain dicts."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        from kubernetes import client

        self.plane, self.namespace = plane, namespace
        self.api = plane.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)

    def close(self) -> None:
        self.api.close()

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        group, version = obj["apiVersion"].split("/")
        plural = _PLURALS[obj["kind"]]
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            group, version, self.namespace, plural, obj
        )
        return created

    def get(self, kind: str, name: str, api_version: str | None = None) -> dict[str, Any] | None:
        from kubernetes.client import ApiException

        group, version = (api_version or _API[kind]).split("/")
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                group, version, self.namespace, _PLURALS[kind], name
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return found

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> None:
        group, version = _API[kind].split("/")
        self.custom.patch_namespaced_custom_object(
            group, version, self.namespace, _PLURALS[kind], name, body
        )

    def delete(self, kind: str, name: str) -> None:
        group, version = _API[kind].split("/")
        self.custom.delete_namespaced_custom_object(
            group, version, self.namespace, _PLURALS[kind], name
        )

    def raw(self, path: str) -> dict[str, Any] | None:
        """GET any API path as a dict (None on 404)."""
        answer = self.plane.kubectl("get", "--raw", path, check=False)
        if answer.returncode != 0:
            if "NotFound" in answer.stderr or "not found" in answer.stderr:
                return None
            raise AssertionError(answer.stderr)
        result: dict[str, Any] = json.loads(answer.stdout)
        return result

    def owned(self, resource: str, name: str) -> dict[str, Any] | None:
        group = {"deployments": "apis/apps/v1", "services": "api/v1"}.get(
            resource, "apis/autoscaling/v2"
        )
        return self.raw(f"/{group}/namespaces/{self.namespace}/{resource}/{name}")

    def names(self, resource: str) -> list[str]:
        group = {"deployments": "apis/apps/v1", "services": "api/v1"}.get(
            resource, "apis/autoscaling/v2"
        )
        listed = self.raw(f"/{group}/namespaces/{self.namespace}/{resource}")
        return sorted(item["metadata"]["name"] for item in (listed or {}).get("items", []))


_PLURALS = {
    "InferenceService": "inferenceservices",
    "InferenceGraph": "inferencegraphs",
    "ServingRuntime": "servingruntimes",
}
_API = {
    "InferenceService": "serving.kserve.io/v1beta1",
    "InferenceGraph": "serving.kserve.io/v1alpha1",
}


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            found: dict[str, Any] = c
            return found
    return None


def is_true(obj: dict[str, Any] | None, kind: str) -> bool:
    c = condition(obj, kind)
    return c is not None and c.get("status") == "True"


def graph_json(deployment: dict[str, Any]) -> dict[str, Any]:
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    parsed: dict[str, Any] = json.loads(args[args.index("--graph-json") + 1])
    return parsed
