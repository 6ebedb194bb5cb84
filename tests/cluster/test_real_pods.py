"""The deploy half for real: the controller, predictors and routers as containers on a node.

On the one-node cluster of tests/cluster/node.py: install InferGraph as the README says
(`kubectl apply -k config/crd`, wait for Established, `kubectl apply -k config/default`), so the
controller runs as a pod from the router image; apply the iris-ensemble and wine-canary bundles
(storageUri pointing into the storage-initializer image, where tools/cluster/images.py put
the trained models; smaller resource requests, since the runtime's 1 CPU per predictor does
not fit five predictors on a 2-core node); wait until everything is Ready; then, through the
graphs' Service ClusterIPs (kube-proxy's rules on this machine):

- the answers equal what `infergraph up` gives for the same bundle;
- a deleted predictor pod is replaced and the graph answers again;
- new Splitter weights roll the router Deployment under load without one failed request;
- SIGTERM to the router inside its pod: /readyz turns 503, the readiness probe takes the pod
  out of service, it keeps answering while it drains, exits 0 and is restarted;
- the graph's minReplicas 2 reaches the router HPA, which scales the router to two pods
  (no metrics-server here, but an HPA holds its minimum without metrics), and the Service
  spreads requests over both.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris, load_wine

from graph_controller.local.deploy import deployment
from graph_controller.planning.bundle import load_bundle
from tests.cluster.node import Cluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
MODEL_STORE = "/models"  # tools/cluster/images.py's MODEL_STORE
NAMESPACE = "default"
SYSTEM = "infergraph-system"  # config/manager's namespace
BUNDLES = ("iris-ensemble", "wine-canary")
# A kserve ModelServer with scikit-learn idles at ~0.1 CPU; the runtime asks for 1 CPU each.
PREDICTOR_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}

# Bounds on a loaded 2-core machine: a pod's first start (storage initializer, then the model
# server importing sklearn and kserve) takes tens of seconds.
READY_TIMEOUT = 600
RECOVER_TIMEOUT = 300
ROLL_TIMEOUT = 300
DRAIN_OBSERVE_TIMEOUT = 120
SCALE_TIMEOUT = 300  # the HPA controller syncs every 15 s, then a router pod starts
POLL = 1.0
LOAD_CONCURRENCY = 4  # a small load: the point is no failure, not throughput
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1800)]


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(POLL)
    raise AssertionError(f"{what}: not after {timeout:.0f}s")


def cluster_documents(example: str) -> list[dict[str, Any]]:
    """The example's resources, with each storageUri moved into the storage-initializer image
    and the predictors' resources made to fit the node."""
    folder = EXAMPLES / example
    documents = []
    for path in sorted(folder.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            document = copy.deepcopy(document)
            if document["kind"] == "InferenceService":
                model = document["spec"]["predictor"]["model"]
                model["storageUri"] = f"file://{MODEL_STORE}/{example}/{model['storageUri']}"
                model["resources"] = PREDICTOR_RESOURCES
            documents.append(document)
    return documents


def apply(cluster: Cluster, documents: list[dict[str, Any]]) -> None:
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all(documents))


def get(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", "-n", NAMESPACE, "-o", "json", *args))


def ready(resource: dict[str, Any]) -> bool:
    conditions = resource.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def graph_url(cluster: Cluster, graph: str) -> str:
    service = get(cluster, "service", graph)
    return f"http://{service['spec']['clusterIP']}:80"


def pods(cluster: Cluster, selector: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    found = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    items: list[dict[str, Any]] = json.loads(found)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def pod_ready(pod: dict[str, Any]) -> bool:
    return ready(pod) and pod["status"].get("phase") == "Running"


def logs_of_everything(cluster: Cluster) -> str:
    return cluster.kubectl("get", "pods", "-A", "-o", "wide", check=False) + cluster.kubectl(
        "get", "inferenceservices,inferencegraphs.serving.kserve.io", "-A", check=False
    )


@pytest.fixture(scope="module")
def installed(cluster: Cluster) -> Cluster:
    """InferGraph installed by the README's commands, both bundles applied and Ready."""
    # Word for word the README's "Installing on a cluster" (plus a bound on the wait).
    cluster.kubectl("apply", "-k", str(REPO / "config/crd"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
    cluster.kubectl("apply", "-k", str(REPO / "config/default"))
    for example in BUNDLES:
        apply(cluster, cluster_documents(example))

    def everything_ready() -> bool:
        isvcs = get(cluster, "inferenceservices")["items"]
        # Qualified: InferenceGraph exists in serving.kserve.io and infergraph.dev.
        graphs = get(cluster, "inferencegraphs.serving.kserve.io")["items"]
        return len(isvcs) == 5 and len(graphs) == 2 and all(map(ready, isvcs + graphs))

    try:
        wait_for("every InferenceService and InferenceGraph Ready", everything_ready, READY_TIMEOUT)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{logs_of_everything(cluster)}") from e
    return cluster


async def post(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with session.post(url, json=body, timeout=REQUEST_TIMEOUT) as response:
        return response.status, await response.json(content_type=None)


IRIS_ROWS = [load_iris().data[i].tolist() for i in range(0, 150, 7)]


async def answers(url: str, rows: list[list[float]]) -> list[tuple[int, Any]]:
    async with aiohttp.ClientSession() as session:
        return [await post(session, url, {"instances": [row]}) for row in rows]


async def local_answers(example: str, rows: list[list[float]]) -> list[tuple[int, Any]]:
    async with deployment(load_bundle(EXAMPLES / example), lambda line: None) as running:
        return await answers(running.graphs[0].url, rows)


async def test_the_graph_answers_through_pods_as_infergraph_up_does(installed: Cluster) -> None:
    # The controller that deployed all this runs as a pod of the router image.
    (controller,) = pods(installed, "app.kubernetes.io/name=infergraph-controller", SYSTEM)
    assert pod_ready(controller)
    assert controller["spec"]["containers"][0]["image"] == "infergraph/router:0.1.0"
    on_cluster = await answers(graph_url(installed, "iris-ensemble"), IRIS_ROWS)
    local = await local_answers("iris-ensemble", IRIS_ROWS)
    assert on_cluster == local
    assert {status for status, _ in on_cluster} == {200}
    # Real answers of three classifiers, not an error body that happens to match.
    assert on_cluster[0][1] == {name: {"predictions": [0]} for name in ("logreg", "tree", "knn")}


def test_a_deleted_predictor_pod_is_replaced_and_the_graph_recovers(installed: Cluster) -> None:
    selector = "serving.kserve.io/inferenceservice=iris-tree"
    (before,) = pods(installed, selector)
    installed.kubectl("delete", "pod", "-n", NAMESPACE, before["metadata"]["name"], "--wait=true")

    def replaced() -> bool:
        now = pods(installed, selector)
        return (
            len(now) == 1
            and now[0]["metadata"]["uid"] != before["metadata"]["uid"]
            and (pod_ready(now[0]))
        )

    wait_for("a new Ready iris-tree predictor pod", replaced, RECOVER_TIMEOUT)
    url = graph_url(installed, "iris-ensemble")

    def answering() -> bool:
        try:
            (status, body), *_ = asyncio.run(answers(url, IRIS_ROWS[:1]))
        except (aiohttp.ClientError, TimeoutError):
            return False
        return status == 200 and body["tree"] == {"predictions": [0]}

    # kube-proxy's rules follow the EndpointSlice a moment after the pod turns Ready.
    wait_for("iris-ensemble answering with the new tree predictor", answering, RECOVER_TIMEOUT)
    assert ready(get(installed, "inferenceservice", "iris-tree"))


async def test_new_splitter_weights_roll_the_router_without_a_failed_request(
    installed: Cluster,
) -> None:
    url = graph_url(installed, "wine-canary")
    rows = [row.tolist() for row in load_wine().data]
    (old_router,) = pods(installed, "serving.kserve.io/inferencegraph=wine-canary")
    outcomes: list[tuple[int, Any] | str] = []
    rolled = asyncio.Event()

    async def client(index: int, session: aiohttp.ClientSession) -> None:
        sent = 0
        while not rolled.is_set():
            row = rows[(index + sent * LOAD_CONCURRENCY) % len(rows)]
            sent += 1
            try:
                outcomes.append(await post(session, url, {"instances": [row]}))
            except (aiohttp.ClientError, TimeoutError) as error:
                outcomes.append(f"{type(error).__name__}: {error}")

    def roll_finished() -> bool:
        now = pods(installed, "serving.kserve.io/inferencegraph=wine-canary")
        return (
            len(now) == 1
            and now[0]["metadata"]["uid"] != old_router["metadata"]["uid"]
            and pod_ready(now[0])
        )

    async def roll() -> None:
        patch = {
            "spec": {
                "nodes": {
                    "root": {
                        "routerType": "Splitter",
                        "steps": [
                            {"serviceName": "wine-v1", "name": "stable", "weight": 50},
                            {"serviceName": "wine-v2", "name": "canary", "weight": 50},
                        ],
                    }
                }
            }
        }
        await asyncio.sleep(3)  # some load before the roll starts
        try:
            await roll_and_drain(patch)
        finally:
            rolled.set()  # the load stops with the roll, also when the roll fails

    async def roll_and_drain(patch: dict[str, Any]) -> None:
        await asyncio.to_thread(
            installed.kubectl,
            "patch",
            "-n",
            NAMESPACE,
            "inferencegraphs.serving.kserve.io",
            "wine-canary",
            "--type=merge",
            "-p",
            json.dumps(patch),
        )
        await asyncio.to_thread(wait_for, "the new router pod Ready", roll_finished, ROLL_TIMEOUT)
        # The old pod drains (30 s) after the new one is Ready; keep the load on through it.
        await asyncio.to_thread(
            wait_for,
            "the old router pod gone",
            lambda: (
                not any(
                    p["metadata"]["uid"] == old_router["metadata"]["uid"]
                    for p in get(
                        installed, "pods", "-l", "serving.kserve.io/inferencegraph=wine-canary"
                    )["items"]
                )
            ),
            ROLL_TIMEOUT,
        )

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(roll(), *(client(i, session) for i in range(LOAD_CONCURRENCY)))

    failures = [o for o in outcomes if isinstance(o, str) or o[0] != 200]
    assert failures == []
    assert len(outcomes) > 50  # the load really ran through the roll
    deployment_args = get(installed, "deployment", "wine-canary")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    graph = json.loads(deployment_args[deployment_args.index("--graph-json") + 1])
    assert [s["weight"] for s in graph["nodes"]["root"]["steps"]] == [50, 50]


def container_pid(cluster: Cluster, pod: dict[str, Any]) -> int:
    """The host pid of the pod's first container's main process."""
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix(
        "containerd://"
    )
    for line in cluster.ctr("tasks", "ls").splitlines()[1:]:
        task, pid, _status = line.split()
        if task == container_id:
            return int(pid)
    raise AssertionError(f"no containerd task for container {container_id}")


async def test_sigterm_drains_the_router_in_its_pod_through_the_readiness_probe(
    installed: Cluster,
) -> None:
    selector = "serving.kserve.io/inferencegraph=iris-ensemble"
    (pod,) = pods(installed, selector)
    assert pod_ready(pod)
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]
    pod_url = f"http://{pod['status']['podIP']}:8080"
    os.kill(container_pid(installed, pod), signal.SIGTERM)

    def taken_out_of_service() -> bool:
        (now,) = pods(installed, selector)
        running = "running" in now["status"]["containerStatuses"][0]["state"]
        return running and not ready(now)

    # The readiness probe (every 5 s, 3 failures) sees /readyz 503 within the 30 s drain.
    await asyncio.to_thread(
        wait_for,
        "router pod NotReady while still running",
        taken_out_of_service,
        DRAIN_OBSERVE_TIMEOUT,
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{pod_url}/readyz", timeout=REQUEST_TIMEOUT) as response:
            assert response.status == 503
        # Out of the Service, but still answering whoever has its address while it drains.
        status, body = await post(session, pod_url, {"instances": [IRIS_ROWS[0]]})
    assert (status, body["tree"]) == (200, {"predictions": [0]})

    def restarted_after_clean_exit() -> bool:
        (now,) = pods(installed, selector)
        status = now["status"]["containerStatuses"][0]
        terminated = status.get("lastState", {}).get("terminated")
        return status["restartCount"] == restarts + 1 and terminated is not None

    await asyncio.to_thread(
        wait_for, "router restarted", restarted_after_clean_exit, DRAIN_OBSERVE_TIMEOUT
    )
    (now,) = pods(installed, selector)
    assert now["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 0
    await asyncio.to_thread(
        wait_for,
        "router Ready again",
        lambda: pod_ready(pods(installed, selector)[0]),
        DRAIN_OBSERVE_TIMEOUT,
    )
    assert (await answers(graph_url(installed, "iris-ensemble"), IRIS_ROWS[:1]))[0][0] == 200


def requests_answered(pod: dict[str, Any]) -> float:
    """The router pod's own count of graph requests it answered 200 (its /metrics)."""
    url = f"http://{pod['status']['podIP']}:8080/metrics"

    async def scrape() -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, timeout=REQUEST_TIMEOUT) as response,
        ):
            assert response.status == 200, f"{url}: {response.status}"
            return await response.text()

    for family in text_string_to_metric_families(asyncio.run(scrape())):
        for sample in family.samples:
            # One graph per router; KServe's args name no graph, so its label is the default.
            if sample.name == "infergraph_requests_total" and sample.labels["status"] == "200":
                return sample.value
    return 0.0  # no request answered yet: the series appears with the first


def proxied_to(graph: str, pod_ips: set[str]) -> bool:
    """kube-proxy's DNAT rules for the graph's Service lead to exactly these pods."""
    rules = subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    # kube-proxy comments each endpoint rule with the Service's namespace/name:port.
    targets = {
        line.split("--to-destination ")[1].split(":")[0]
        for line in rules.splitlines()
        if f'"{NAMESPACE}/{graph}' in line and "--to-destination" in line
    }
    return targets == pod_ips


def scale(cluster: Cluster, graph: str, minimum: int, maximum: int) -> None:
    patch = {"spec": {"minReplicas": minimum, "maxReplicas": maximum}}
    # Group-qualified: infergraph.dev defines an InferenceGraph kind too.
    resource = "inferencegraphs.serving.kserve.io"
    cluster.kubectl(
        "patch", "-n", NAMESPACE, resource, graph, "--type=merge", "-p", json.dumps(patch)
    )


async def test_min_replicas_scale_the_router_through_its_hpa(installed: Cluster) -> None:
    graph = "iris-ensemble"
    selector = f"serving.kserve.io/inferencegraph={graph}"
    scale(installed, graph, 2, 3)
    try:
        await scaled_router_shares_the_load(installed, graph, selector)
    finally:
        scale(installed, graph, 1, 3)
    await asyncio.to_thread(
        wait_for,
        "router HPA minReplicas back to 1",
        lambda: get(installed, "hpa", graph)["spec"]["minReplicas"] == 1,
        SCALE_TIMEOUT,
    )
    # Below the minimum is the HPA's only metric-free rule; scaling down needs a metric, so
    # with no metrics-server both pods stay. The graph answers on.
    assert (await answers(graph_url(installed, graph), IRIS_ROWS[:1]))[0][0] == 200


async def scaled_router_shares_the_load(installed: Cluster, graph: str, selector: str) -> None:
    def hpa_holds_two() -> bool:
        hpa: dict[str, Any] = get(installed, "hpa", graph)
        return bool(
            hpa["spec"]["minReplicas"] == 2
            and hpa["spec"]["maxReplicas"] == 3
            and hpa.get("status", {}).get("desiredReplicas") == 2
        )

    await asyncio.to_thread(wait_for, "router HPA at minReplicas 2", hpa_holds_two, SCALE_TIMEOUT)

    def two_ready() -> bool:
        now = pods(installed, selector)
        return len(now) == 2 and all(map(pod_ready, now))

    await asyncio.to_thread(wait_for, "two Ready router pods", two_ready, SCALE_TIMEOUT)
    routers = pods(installed, selector)
    ips = {p["status"]["podIP"] for p in routers}
    await asyncio.to_thread(
        wait_for,
        f"kube-proxy routing {graph} to {sorted(ips)}",
        lambda: proxied_to(graph, ips),
        SCALE_TIMEOUT,
    )
    before = [await asyncio.to_thread(requests_answered, p) for p in routers]
    rows = [IRIS_ROWS[i % len(IRIS_ROWS)] for i in range(40)]
    # A connection per request: kube-proxy picks an endpoint per connection, and one kept-alive
    # connection would carry all 40 to one pod.
    url = graph_url(installed, graph)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        outcomes = [await post(session, url, {"instances": [row]}) for row in rows]
    assert [status for status, _ in outcomes] == [200] * len(rows)
    after = [await asyncio.to_thread(requests_answered, p) for p in routers]
    served = [a - b for a, b in zip(after, before, strict=True)]
    # Each connection reaches either pod with probability 1/2: one pod taking all 40 is 2**-39.
    assert sum(served) == len(rows), served
    assert all(n > 0 for n in served), served


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-x", "-q"]))
