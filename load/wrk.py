"""Run wrk against a URL and read its figures: a Lua script POSTs the body and prints JSON."""

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SCRIPT = """
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"mean_us":%%.1f,"connect_errors":%%d,"read_errors":%%d,"write_errors":%%d,' ..
    '"status_errors":%%d,"timeouts":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def lua_script(body: bytes, directory: Path) -> Path:
    path = directory / "post.lua"
    path.write_text(SCRIPT % json.dumps(body.decode()))
    return path


def command(url: str, connections: int, seconds: int, script: Path, core: str | None) -> list[str]:
    """wrk's command line; `core` pins wrk (taskset), its one thread driving all connections."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s"]
    cmd += [str(script), url]
    return cmd if core is None else ["taskset", "-c", core, *cmd]


def figures(stdout: str) -> dict[str, Any]:
    """The figures the Lua script printed, plus requests/s."""
    for line in stdout.splitlines():
        if line.startswith("WRKJSON "):
            result: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no figures: {stdout}")


def run(url: str, connections: int, seconds: int, script: Path, core: str | None) -> dict[str, Any]:
    """One wrk run, waited for."""
    cmd = command(url, connections, seconds, script, core)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True)
    return figures(out.stdout)


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="infergraph-bench-"))
