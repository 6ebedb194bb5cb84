"""The Dockerfile, tested without Docker (none here): its stated properties are read from the
file, and its ENTRYPOINT runs in the project venv exactly as the image runs it (same argv, PATH
and environment, /opt/venv standing for .venv) with the arguments the rendered router
Deployment passes, i.e. KServe's."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from graph_controller.controller.render import HTTP_PORT, ROUTER_IMAGE, RenderOptions, render
from graph_controller.planning.builtin_runtimes import builtin_runtimes
from graph_controller.planning.bundle import load_bundle
from tests.support import LOOPBACK, ROUTER_START_TIMEOUT, free_port

REPO = Path(__file__).parents[2]
VENV_IN_IMAGE = "/opt/venv"
# Commands a final-stage RUN may use: creating the user. Anything else (apt-get, pip, gcc)
# would put a package manager's work or build tools into the shipped image.
FINAL_STAGE_COMMANDS = {"groupadd", "useradd"}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [value for key, value in self.instructions if key == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile: comments dropped, backslash continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, value = line.partition(" ")
        keyword, value = keyword.upper(), value.strip()
        if keyword == "FROM":
            words = value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            stages[-1].instructions.append((keyword, value))
    return stages


def exec_form(value: str | None) -> list[str]:
    assert value is not None
    parsed = json.loads(value)  # the shell form would wrap the command in /bin/sh -c
    assert isinstance(parsed, list)
    return [str(word) for word in parsed]


def image_env(stage: Stage) -> dict[str, str]:
    """The final stage's ENV, `$VAR` expanded against the base image's (here: this process's)."""
    env: dict[str, str] = {}
    for value in stage.all("ENV"):
        for word in shlex.split(value):
            key, _, setting = word.partition("=")
            env[key] = re.sub(
                r"\$(\w+)", lambda m: env.get(m.group(1), os.environ.get(m.group(1), "")), setting
            )
    return env


STAGES = parse_dockerfile((REPO / "Dockerfile").read_text())
FINAL = STAGES[-1]


def test_two_stages_on_slim_python_311() -> None:
    assert [stage.base for stage in STAGES] == ["python:3.11-slim", "python:3.11-slim"]
    assert STAGES[0].name == "build"
    assert FINAL.all("COPY") == [f"--from=build {VENV_IN_IMAGE} {VENV_IN_IMAGE}"]


def test_final_stage_installs_nothing() -> None:
    commands = set()
    for run in FINAL.all("RUN"):
        for part in re.split(r"&&|;|\|\|", run):
            commands.add(shlex.split(part)[0])
    assert commands <= FINAL_STAGE_COMMANDS


def test_runs_as_a_numeric_non_root_user_the_deployments_agree_with() -> None:
    user = FINAL.last("USER")
    assert user is not None
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert gid.isdigit()
    # USER is the last word on identity: nothing after it switches back to root.
    keywords = [key for key, _ in FINAL.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :]
    manager = yaml.safe_load((REPO / "config/manager/deployment.yaml").read_text())
    pod_security = manager["spec"]["template"]["spec"]["securityContext"]
    assert (pod_security["runAsUser"], pod_security["runAsGroup"]) == (int(uid), int(gid))
    assert manager["spec"]["template"]["spec"]["containers"][0]["image"] == ROUTER_IMAGE


def test_exposes_kserves_router_port() -> None:
    assert FINAL.all("EXPOSE") == [str(HTTP_PORT)] == ["8080"]


def test_entrypoint_is_the_router_and_the_controller_is_on_path() -> None:
    assert exec_form(FINAL.last("ENTRYPOINT")) == ["python", "-m", "router"]
    assert FINAL.last("CMD") is None  # KServe's args become the whole command line's tail
    path = image_env(FINAL)["PATH"].split(os.pathsep)
    assert path[0] == f"{VENV_IN_IMAGE}/bin"  # so `infergraph controller` resolves, too


def build_context_excludes(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    return any(
        fnmatch.fnmatch(path, pattern.removeprefix("**/"))
        or any(fnmatch.fnmatch(part, pattern.removeprefix("**/")) for part in parts)
        for pattern in patterns
    )


def test_build_stage_copies_everything_the_package_needs() -> None:
    sources = [
        source
        for value in STAGES[0].all("COPY")
        for source in value.split()[:-1]
        if not source.startswith("--")
    ]
    pyproject = (REPO / "pyproject.toml").read_text()
    packages = re.search(r"include = \[([^\]]*)\]", pyproject)
    assert packages is not None
    wanted = {name.strip(' "*') for name in packages.group(1).split(",")}
    assert set(sources) == {"pyproject.toml", "README.md", *wanted}
    for source in sources:
        assert (REPO / source).exists(), source
        assert not build_context_excludes(source), f".dockerignore drops {source}"
    for heavy in (".venv", ".git", "tests", "examples/digits-pipeline/models"):
        assert build_context_excludes(heavy), heavy


def test_build_stage_sources_alone_make_a_complete_wheel(tmp_path: Path) -> None:
    """What `pip install .` does in the build stage, on a context holding only the COPYs."""
    context = tmp_path / "src"
    context.mkdir()
    for value in STAGES[0].all("COPY"):
        *sources, _ = value.split()
        for source in sources:
            origin = REPO / source
            if origin.is_dir():
                shutil.copytree(
                    origin, context / source, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy(origin, context / source)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    built = subprocess.run(
        [*pip_wheel, "-w", str(tmp_path / "wheel"), str(context)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("infergraph-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "infergraph = graph_controller.cli:main" in archive.read(entry_points).decode()
    for needed in (
        "router/__main__.py",
        "schemas/py.typed",
        "graph_controller/runtimes/kserve-sklearnserver.yaml",
        "graph_controller/runtimes/infergraph-custom.yaml",
    ):
        assert needed in names


def rendered_router_container() -> dict[str, Any]:
    bundle = load_bundle(REPO / "examples" / "iris-ensemble")
    manifests = render(
        bundle.graphs,
        bundle.services,
        (*bundle.runtimes, *builtin_runtimes()),
        RenderOptions(propagate_headers=("Authorization",)),
    )
    for manifest in manifests:
        spec = manifest.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            if container["image"] == ROUTER_IMAGE:
                return dict(container)
    raise AssertionError("no router container rendered")


def test_entrypoint_serves_kserves_arguments_from_the_venv(tmp_path: Path) -> None:
    container = rendered_router_container()
    assert "command" not in container  # as KServe's: the image's ENTRYPOINT runs
    env = {**os.environ, **image_env(FINAL)}
    env["PATH"] = env["PATH"].replace(VENV_IN_IMAGE, sys.prefix, 1)
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    entrypoint = exec_form(FINAL.last("ENTRYPOINT"))
    resolved = shutil.which(entrypoint[0], path=env["PATH"])
    assert resolved == f"{sys.prefix}/bin/{entrypoint[0]}"
    port = free_port()
    # The rendered args, then test-only overrides: loopback instead of 0.0.0.0:8080, and a
    # short drain so stopping it takes no 30 s.
    overrides = ["--host", LOOPBACK, "--port", str(port), "--drain-seconds", "0.2"]
    log = tmp_path / "router.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [*entrypoint, *container["args"], *overrides],
            executable=resolved,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + ROUTER_START_TIMEOUT
        status = None
        while time.monotonic() < deadline and process.poll() is None and status != 200:
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/readyz", timeout=2) as r:
                    status = r.status
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        assert process.poll() is None, log.read_text()
        assert status == 200
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.parametrize("command", [["infergraph", "--help"]], ids=["infergraph"])
def test_overridden_command_resolves_in_the_venv(command: list[str]) -> None:
    path = image_env(FINAL)["PATH"].replace(VENV_IN_IMAGE, sys.prefix, 1)
    resolved = shutil.which(command[0], path=path)
    assert resolved == f"{sys.prefix}/bin/{command[0]}"
    done = subprocess.run(
        [resolved, *command[1:]], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
