"""Go oracles for differential tests, built from the Go module proxy and cached.

`gjson_oracle`: Go's tidwall/gjson answering queries (tests/gjson_oracle; used by
test_gjson_differential.py). `kserve_oracle`: KServe's own Go API types (v0.15.2) decoding and
re-encoding objects (tests/kserve_oracle; used by test_kserve_differential.py), and
`kserve_crds`: KServe's published CRDs of the same module version, read from the Go module
cache. Binaries are cached outside the repository under `~/.cache/infergraph/<name>-<hash>`,
keyed by the Go sources and the Go toolchain version, so a session rebuilds only when either
changes. Without a `go` toolchain the tests that use them are skipped, saying so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

ORACLE_SOURCES = Path(__file__).resolve().parent.parent / "gjson_oracle"
KSERVE_ORACLE_SOURCES = Path(__file__).resolve().parent.parent / "kserve_oracle"
KSERVE_MODULE = "github.com/kserve/kserve"  # its version is the one go.mod pins
# Go's own installer puts the toolchain here; PATH in a test runner often lacks it.
GO_FALLBACK = Path("/usr/local/go/bin/go")


@dataclass(frozen=True, slots=True)
class OracleAnswer:
    exists: bool
    value: Any  # Go's Result.Value(), decoded; None when absent or unencodable
    raw: str
    type: str
    unencodable: bool  # the value was NaN or ±Inf, which JSON cannot carry


class GjsonOracle:
    """One long-running oracle process; `oracle(doc_bytes, path) -> (exists, value)`."""

    def __init__(self, binary: Path) -> None:
        self._process = subprocess.Popen(
            [str(binary)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def __call__(self, doc: bytes, path: str) -> tuple[bool, Any]:
        answer = self.answer(doc, path)
        return answer.exists, answer.value

    def answer(self, doc: bytes, path: str) -> OracleAnswer:
        stdin, stdout = self._process.stdin, self._process.stdout
        if stdin is None or stdout is None:
            raise RuntimeError("gjson oracle has no pipes")
        stdin.write(orjson.dumps({"doc": doc.decode(), "path": path}) + b"\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            stderr = self._process.stderr.read().decode() if self._process.stderr else ""
            raise RuntimeError(f"gjson oracle exited: {stderr}")
        reply = orjson.loads(line)
        if "error" in reply:
            raise RuntimeError(f"gjson oracle rejected the query: {reply['error']}")
        return OracleAnswer(
            reply["exists"],
            reply["value"],
            reply["raw"],
            reply["type"],
            reply.get("unencodable", False),
        )

    def close(self) -> None:
        _stop(self._process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End a Go oracle: close its input (it exits at EOF), then wait, killing it if it hangs."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _go() -> str | None:
    found = shutil.which("go")
    if found is not None:
        return found
    return str(GO_FALLBACK) if GO_FALLBACK.is_file() else None


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "infergraph"


def _build(go: str, sources: Path = ORACLE_SOURCES, name: str = "gjson-oracle") -> Path:
    version = subprocess.run(
        [go, "version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    digest = hashlib.sha256(version.encode())
    for file in ("go.mod", "go.sum", "main.go"):
        digest.update(file.encode() + b"\0" + (sources / file).read_bytes())
    target_dir = _cache_root() / f"{name}-{digest.hexdigest()[:16]}"
    binary = target_dir / name
    if binary.is_file():
        return binary
    target_dir.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so a concurrent session never runs half a binary.
    fd, partial = tempfile.mkstemp(dir=target_dir, prefix=".building-")
    os.close(fd)
    env = dict(os.environ)
    # go.sum is complete, so readonly proves it; the module proxy supplies the sources.
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=readonly").strip()
    result = subprocess.run(
        [go, "build", "-trimpath", "-o", partial, "."],
        cwd=sources,
        env=env,
        capture_output=True,
        text=True,
        # KServe's module graph is large: about 3 minutes on 2 cores with an empty module cache.
        timeout=900,
    )
    if result.returncode != 0:
        Path(partial).unlink(missing_ok=True)
        raise RuntimeError(f"building {name} failed:\n{result.stderr}")
    os.replace(partial, binary)
    return binary


@pytest.fixture(scope="session")
def gjson_oracle() -> Iterator[GjsonOracle]:
    go = _go()
    if go is None:
        pytest.skip("Go toolchain not found: the GJSON oracle needs it")
    oracle = GjsonOracle(_build(go))
    try:
        yield oracle
    finally:
        oracle.close()


class KserveOracle:
    """One long-running kserve-oracle process: `oracle(obj)` is KServe's Go types' view of
    `obj` (decoded strictly, encoded again), or a `KserveRefusal` naming why they refused it."""

    def __init__(self, binary: Path) -> None:
        self._process = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def __call__(self, obj: Any) -> dict[str, Any] | KserveRefusal:
        stdin, stdout = self._process.stdin, self._process.stdout
        if stdin is None or stdout is None:
            raise RuntimeError("kserve oracle has no pipes")
        stdin.write(orjson.dumps({"object": obj}) + b"\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            stderr = self._process.stderr.read().decode() if self._process.stderr else ""
            raise RuntimeError(f"kserve oracle exited: {stderr}")
        reply = orjson.loads(line)
        if "error" in reply:
            return KserveRefusal(reply["error"])
        decoded: dict[str, Any] = reply["object"]
        return decoded

    def close(self) -> None:
        _stop(self._process)


@dataclass(frozen=True, slots=True)
class KserveRefusal:
    error: str


@pytest.fixture(scope="session")
def kserve_oracle() -> Iterator[KserveOracle]:
    go = _go()
    if go is None:
        pytest.skip("Go toolchain not found: the KServe oracle needs it")
    oracle = KserveOracle(_build(go, KSERVE_ORACLE_SOURCES, "kserve-oracle"))
    try:
        yield oracle
    finally:
        oracle.close()


@pytest.fixture(scope="session")
def kserve_crds() -> Path:
    """KServe's published CRDs (config/crd/full) of the version tests/kserve_oracle pins, from
    the Go module cache (downloaded through the module proxy when missing)."""
    go = _go()
    if go is None:
        pytest.skip("Go toolchain not found: KServe's CRDs come from its Go module")
    listed = subprocess.run(
        [go, "list", "-m", "-json", KSERVE_MODULE],
        cwd=KSERVE_ORACLE_SOURCES,
        capture_output=True,
        check=True,
        timeout=300,
    )
    version = orjson.loads(listed.stdout)["Version"]
    downloaded = subprocess.run(
        [go, "mod", "download", "-json", f"{KSERVE_MODULE}@{version}"],
        cwd=KSERVE_ORACLE_SOURCES,
        capture_output=True,
        check=True,
        timeout=600,
    )
    return Path(orjson.loads(downloaded.stdout)["Dir"]) / "config" / "crd" / "full"
