"""The `gjson_oracle` fixture: Go's tidwall/gjson answering queries, for differential tests.

Owns building and running tests/gjson_oracle (a small Go program) for the session; used by
tests/properties/test_gjson_differential.py. The binary is cached outside the repository under
`~/.cache/infergraph/gjson-oracle-<hash>`, keyed by the Go sources and the Go toolchain version,
so a session rebuilds only when either changes. Without a `go` toolchain the tests that use it
are skipped, saying so.
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
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for stream in (self._process.stdout, self._process.stderr):
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


def _build(go: str) -> Path:
    version = subprocess.run(
        [go, "version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    digest = hashlib.sha256(version.encode())
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update(name.encode() + b"\0" + (ORACLE_SOURCES / name).read_bytes())
    target_dir = _cache_root() / f"gjson-oracle-{digest.hexdigest()[:16]}"
    binary = target_dir / "gjson-oracle"
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
        cwd=ORACLE_SOURCES,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        Path(partial).unlink(missing_ok=True)
        raise RuntimeError(f"building the gjson oracle failed:\n{result.stderr}")
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
