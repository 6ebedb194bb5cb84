"""`infergraph up` and `down` around what is not theirs, and the curl line `up` prints.

A router port already taken is refused before anything starts (a server there would answer
the readiness probe in the router's place); `down` signals only processes whose start time is
the one its state file recorded (a stale file's pids may belong to other programs by now);
the curl line carries the graph's `infergraph.dev/sample-request` body, quoted for the shell,
or says that its body is a placeholder. Real processes and servers."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph_controller.cli.main import main as infergraph
from graph_controller.local.deploy import curl_lines, down, start_time
from tests.support import LOOPBACK

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(autouse=True)
def own_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where `up` and `down` keep state: this test's own, so no other `up` is touched."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return tmp_path / "infergraph" / "up"


class _AlwaysReady(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def other_server() -> Iterator[int]:
    """Something else answering 200 on every path, as another router would; yields its port."""
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), _AlwaysReady)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_up_refuses_a_port_in_use_before_starting_anything(
    other_server: int, capsys: pytest.CaptureFixture[str]
) -> None:
    subprocess.run([sys.executable, str(EXAMPLES / "train.py")], check=True, capture_output=True)
    status = infergraph(["up", str(EXAMPLES / "iris-ensemble"), "--port", str(other_server)])
    captured = capsys.readouterr()
    assert status == 1
    assert f"infergraph up: port {other_server} on 127.0.0.1 is already in use" in captured.err
    assert "choose another port with --port" in captured.err
    assert "starting" not in captured.out
    assert "ready at" not in captured.out


@pytest.fixture
def bystanders() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Live processes unrelated to `up`, each leading its own process group; all must live."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait(timeout=10)


def spawn(bystanders: list[subprocess.Popen[bytes]], script: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    bystanders.append(process)
    return process


def write_state(directory: Path, state: dict[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{state['pid']}.json"
    path.write_text(json.dumps(state))
    return path


def started(pid: int) -> int:
    ticks = start_time(pid)
    assert ticks is not None
    return ticks


def test_down_leaves_processes_that_reused_recorded_pids_alone(
    own_state_dir: Path, bystanders: list[subprocess.Popen[bytes]]
) -> None:
    # A stale state file: its `up` and child died long ago, and their pids now belong to a
    # program named like ours and to an unrelated process group.
    lookalike = spawn(bystanders, "exec -a infergraph-lookalike sleep 300")
    unrelated = spawn(bystanders, "exec sleep 300")
    state = write_state(
        own_state_dir,
        {
            "pid": lookalike.pid,
            "start": started(lookalike.pid) - 1,
            "children": [
                {"name": "iris-logreg", "pgid": unrelated.pid, "start": started(unrelated.pid) - 1}
            ],
            "graphs": {"iris-ensemble": "http://127.0.0.1:8080"},
        },
    )
    lines: list[str] = []
    assert down(lines.append, timeout=5) == 0
    assert lookalike.poll() is None
    assert unrelated.poll() is None
    assert not state.exists()
    assert lines == [
        f"removed {state}: infergraph up (pid {lookalike.pid}: iris-ensemble) had ended; its "
        "pids are gone or belong to other programs now, so nothing was signalled"
    ]


def test_down_leaves_pids_of_a_state_file_without_start_times_alone(
    own_state_dir: Path, bystanders: list[subprocess.Popen[bytes]]
) -> None:
    # Written before start times were recorded: nothing proves the pids are still ours.
    lookalike = spawn(bystanders, "exec -a infergraph-lookalike sleep 300")
    unrelated = spawn(bystanders, "exec sleep 300")
    write_state(
        own_state_dir,
        {"pid": lookalike.pid, "children": [{"name": "m", "pgid": unrelated.pid}], "graphs": {}},
    )
    assert down(lambda line: None, timeout=5) == 0
    assert lookalike.poll() is None
    assert unrelated.poll() is None


def test_down_stops_the_processes_it_recorded(
    own_state_dir: Path, bystanders: list[subprocess.Popen[bytes]]
) -> None:
    up = spawn(bystanders, "exec sleep 300")
    child = spawn(bystanders, "exec sleep 300")
    write_state(
        own_state_dir,
        {
            "pid": up.pid,
            "start": started(up.pid),
            "children": [{"name": "m", "pgid": child.pid, "start": started(child.pid)}],
            "graphs": {"g": "http://127.0.0.1:8080"},
        },
    )
    lines: list[str] = []
    assert down(lines.append, timeout=30) == 1
    assert up.wait(timeout=30) == -15  # SIGTERM
    assert child.wait(timeout=30) == -9  # its group, SIGKILL
    assert lines == [f"stopped infergraph up (pid {up.pid}): g"]


GRAPH_WITH_SAMPLE = """
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: g
  annotations: {{infergraph.dev/sample-request: '{sample}'}}
spec:
  nodes: {{root: {{routerType: Sequence, steps: [{{serviceName: m}}]}}}}
"""


def test_up_refuses_a_sample_request_that_is_not_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "g.yaml"
    bundle.write_text(GRAPH_WITH_SAMPLE.format(sample='{"instances": [[1, 2]'))
    assert infergraph(["up", str(bundle), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert (
        "infergraph up: InferenceGraph 'g': annotation infergraph.dev/sample-request is not "
        "JSON (Expecting ',' delimiter: line 1 column 22 (char 21))"
    ) in err


@pytest.mark.parametrize(
    ("sample", "lines"),
    [
        (
            """{"instances": [["it's", 1]]}""",
            [
                "  curl -s -X POST http://h:1 -H 'Content-Type: application/json' -d "
                """'{"instances": [["it'"'"'s", 1]]}'"""
            ],
        ),
        (
            None,
            [
                "  curl -s -X POST http://h:1 -H 'Content-Type: application/json' -d "
                """'{"instances": [[...]]}'""",
                "  ([...] is a placeholder for one input of your model; a "
                "infergraph.dev/sample-request annotation on the InferenceGraph, holding a JSON "
                "body, puts a real one here)",
            ],
        ),
    ],
    ids=["quoted-for-the-shell", "placeholder-said-so"],
)
def test_curl_lines(sample: str | None, lines: list[str]) -> None:
    assert curl_lines("http://h:1", sample) == lines
