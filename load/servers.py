"""Start and stop the processes a bench run measures, each pinned to its cores with taskset.

Every server listens on 127.0.0.1 (KServe's router binds :8080 on all interfaces, its
hard-coded port; the bench skips it when that port is taken).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from load.procstat import tree

REPO = Path(__file__).resolve().parents[1]
KSERVE_PORT = 8080  # constants.RouterPort in KServe's cmd/router
NGINX_BODY = '{"predictions":[1]}'
READY_SECONDS = 20.0  # a cold Python start with imports takes ~1-2 s on this machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_listening(
    port: int, proc: subprocess.Popen[bytes], seconds: float = READY_SECONDS
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        if port_taken(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args!r} did not listen on {port} within {seconds}s")


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    extra: dict[str, Any] = field(default_factory=dict)

    def url(self, path: str = "/v1/models/m:predict") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _pinned(core: str | None, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", core, *cmd] if core is not None else cmd


def _spawn(name: str, port: int, cmd: list[str], core: str | None, **kw: Any) -> Server:
    proc = subprocess.Popen(
        _pinned(core, cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw
    )
    server = Server(name, port, proc)
    try:
        wait_listening(port, proc)
    except RuntimeError:
        server.stop()
        raise
    return server


def nginx(workdir: Path, core: str | None) -> Server:
    """nginx answering every request with a fixed v1 body: a backend that is never the limit."""
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
master_process off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_buffer_size 64k;
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{
      default_type application/json;
      return 200 '{NGINX_BODY}';
    }}
  }}
}}
"""
    )
    return _spawn("nginx", port, ["nginx", "-c", str(conf), "-p", str(workdir)], core)


def delay_backend(delay_ms: float, core: str | None) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "load.delay_backend", str(port), str(delay_ms)]
    return _spawn(f"delay{delay_ms:g}ms", port, cmd, core, cwd=REPO)


def proxy_baseline(upstream: str, core: str | None) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "load.proxy_baseline", str(port), upstream]
    return _spawn("proxy-baseline", port, cmd, core, cwd=REPO)


def proxy_stack(server: str, client: str, upstream: str, core: str | None) -> Server:
    """A bare proxy of load/proxy_stacks.py: `server` aiohttp or granian, `client` as named."""
    port = free_port()
    if server == "aiohttp":
        cmd = [sys.executable, "-m", "load.proxy_stacks", server, client, str(port), upstream]
        return _spawn(f"proxy-{server}-{client}", port, cmd, core, cwd=REPO)
    # One worker, the single-threaded runtime: the whole server on the one core it is given.
    cmd = [sys.executable, "-m", "granian", "--interface", "rsgi", "--runtime-mode", "st"]
    cmd += ["--workers", "1", "--loop", "uvloop", "--no-ws", "--log-level", "warning"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--factory"]
    cmd += ["load.proxy_stacks:rsgi_app"]
    env = {**os.environ, "PROXY_CLIENT": client, "PROXY_UPSTREAM": upstream}
    return _spawn(f"proxy-{server}-{client}", port, cmd, core, cwd=REPO, env=env)


def router(
    spec: dict[str, Any],
    core: str | None,
    workers: int = 1,
    src: Path = REPO,
    flags: tuple[str, ...] = (),
) -> Server:
    """`python -m router` from the source tree `src` (another checkout measures 'before'),
    with `flags` added to its command line."""
    port = free_port()
    cmd = [sys.executable, "-m", "router", "--graph-json", json.dumps(spec)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--drain-seconds", "0"]
    cmd += ["--log-level", "WARNING", *flags]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(src)}
    server = _spawn("router", port, cmd, core, cwd=src, env=env)
    if workers > 1:
        # Each worker binds on its own; wait until all are up so none misses the start.
        deadline = time.monotonic() + READY_SECONDS
        while len(tree(server.proc.pid)) < workers + 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # taskset execs in place: the supervisor plus its workers
        time.sleep(1.5)  # the last worker's imports and bind
    return server


def kserve_router(binary: Path, spec: dict[str, Any], core: str | None, cores: int = 1) -> Server:
    """KServe's router on `core`, its Go scheduler told it has `cores` of them (GOMAXPROCS)."""
    cmd = [str(binary), "--graph-json", json.dumps(spec)]
    env = {**os.environ, "GOMAXPROCS": str(cores)}
    return _spawn("kserve-router", KSERVE_PORT, cmd, core, env=env)
