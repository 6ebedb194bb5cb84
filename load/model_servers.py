"""Measure the candidate sklearn model servers side by side: install time and size, start time.

    python load/model_servers.py [--work /tmp/infergraph-msrv] [--repeat 3]

For each candidate (KServe's Python ModelServer, MLServer with mlserver-sklearn) it creates a
fresh venv, installs the candidate together with InferGraph's own runtime dependencies (they
must coexist in one venv), records install seconds, site-packages size and package count, then
starts the server on 127.0.0.1 with an iris model `--repeat` times and records the seconds from
spawn to the first 200 on its readiness endpoint, the median reported. pip's cache is whatever
the machine has: run it twice to see warm-cache install times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OURS = ["aiohttp", "orjson", "pydantic>=2.6", "PyYAML", "gjson", "scikit-learn", "joblib"]
CANDIDATES = {
    "kserve": ["kserve"],
    "mlserver": ["mlserver", "mlserver-sklearn"],
}
READY_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python3*/site-packages"))


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def install(venv: Path, packages: list[str]) -> dict[str, float]:
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    started = time.monotonic()
    subprocess.run([*pip, *packages, *OURS], check=True)
    seconds = time.monotonic() - started
    listed = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format=json"], check=True, capture_output=True
    )
    return {
        "install_seconds": round(seconds, 1),
        "site_packages_mb": round(du(site_packages(venv)) / 2**20),
        "packages": len(json.loads(listed.stdout)),
    }


def train_iris(venv: Path, folder: Path) -> None:
    code = (
        "import joblib, sys; from sklearn.datasets import load_iris;"
        "from sklearn.linear_model import LogisticRegression;"
        "d = load_iris(); m = LogisticRegression(max_iter=1000).fit(d.data, d.target);"
        "joblib.dump(m, sys.argv[1])"
    )
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-c", code, str(folder / "model.joblib")], check=True
    )


def start_command(name: str, venv: Path, model: Path, port: int) -> tuple[list[str], str]:
    python = str(venv / "bin" / "python")
    if name == "kserve":
        argv = [
            python, "-m", "graph_controller.model_servers.sklearn", "--model_name", "iris",
            "--model_dir", str(model), "--http_port", str(port), "--enable_grpc", "false",
        ]  # fmt: skip
        return argv, f"http://127.0.0.1:{port}/v1/models/iris"
    settings = {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
                "host": "127.0.0.1", "parallel_workers": 0}  # fmt: skip
    (model / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    (model / "model-settings.json").write_text(json.dumps(model_settings))
    return [str(venv / "bin" / "mlserver"), "start", str(model)], (
        f"http://127.0.0.1:{port}/v2/models/iris/ready"
    )


def time_start(name: str, venv: Path, model: Path) -> float:
    port = free_port()
    argv, ready = start_command(name, venv, model, port)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        while time.monotonic() - started < READY_TIMEOUT:
            try:
                with urllib.request.urlopen(ready, timeout=1) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{name} not ready within {READY_TIMEOUT}s")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", type=Path, default=Path("/tmp/infergraph-msrv"))
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    results = {}
    for name, packages in CANDIDATES.items():
        venv = args.work / name
        figures: dict[str, object] = dict(install(venv, packages))
        model = args.work / f"{name}-model"
        train_iris(venv, model)
        starts = [time_start(name, venv, model) for _ in range(args.repeat)]
        figures["start_to_ready_seconds_median"] = round(statistics.median(starts), 2)
        figures["start_to_ready_seconds_all"] = [round(s, 2) for s in starts]
        results[name] = figures
        print(name, json.dumps(figures), flush=True)
    print(json.dumps({"cores": os.cpu_count(), "python": sys.version.split()[0], **results}))


if __name__ == "__main__":
    main()
