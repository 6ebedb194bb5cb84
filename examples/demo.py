"""`make demo`: the dog-breed pipeline from KServe's docs, run by our router on this machine.

Starts the two toy models and `python -m router --graph-json` (exactly how KServe runs its
router) on free 127.0.0.1 ports, sends a dog and a cat, prints what comes back, and stops
everything, also when something fails half-way.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from graph_controller.plan import predict_url, resolve_service_names
from schemas.loading import load_graph_file

HERE = Path(__file__).parent
READY_TIMEOUT = 20.0  # seconds; generous for a cold start on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {READY_TIMEOUT}s")


def post(url: str, body: object) -> tuple[int, object]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def main() -> int:
    processes: list[subprocess.Popen[bytes]] = []
    try:
        urls = {}
        for model in ("cat-dog-classifier", "dog-breed-classifier"):
            port = free_port()
            cmd = [sys.executable, str(HERE / "toy_models.py"), "--model", model]
            processes.append(subprocess.Popen([*cmd, "--port", str(port)]))
            address = f"http://127.0.0.1:{port}"
            wait_ready(f"{address}/v1/models/{model}", processes[-1])
            urls[model] = predict_url(address, model)
            print(f"model {model:22} ready at {address}")

        graph_file = HERE / "kserve" / "dog-breed.yaml"
        spec = resolve_service_names(load_graph_file(graph_file), urls)
        graph_json = spec.model_dump_json(exclude_none=True)
        router_port = free_port()
        router = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "router",
                "--graph-json",
                graph_json,
                "--host",
                "127.0.0.1",
                "--port",
                str(router_port),
                "--drain-seconds",
                "0",
            ],
            stderr=subprocess.DEVNULL,
        )
        processes.append(router)
        graph_url = f"http://127.0.0.1:{router_port}"
        wait_ready(f"{graph_url}/readyz", router)
        print(f"router ({graph_file.relative_to(HERE.parent)}) ready at {graph_url}\n")

        for label, instances in (("a dog", [[3.0, 4.5]]), ("a cat", [[-2.0, 1.0]])):
            status, body = post(graph_url, {"instances": instances})
            print(f"POST {graph_url}  {label}: {json.dumps({'instances': instances})}")
            print(f"  -> {status} {json.dumps(body)}\n")
        return 0
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        print("stopped the router and both models")


if __name__ == "__main__":
    sys.exit(main())
