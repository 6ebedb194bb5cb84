"""The runnable examples as a newcomer meets them: `python examples/train.py`, then
`infergraph up examples/<name>` (the installed command, a subprocess), then requests.

The curl line `up` prints is run as printed (with its sample body from the graph's
`infergraph.dev/sample-request` annotation) and must get 200. A body the models cannot read
(not JSON, the wrong shape) must fail with the failing model's status and cause, never a 200
holding error bodies, nor a later step's 500 that hides which model refused and why: each
example's first step is `dependency: Hard` for that.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import openai
import orjson
import pytest

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "examples"
INFERGRAPH = Path(sys.executable).parent / "infergraph"
# Model servers import kserve and scikit-learn: seconds each on a loaded 2-core machine.
READY_SECONDS = 180
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def trained_models() -> None:
    subprocess.run(
        [sys.executable, str(EXAMPLES / "train.py")], check=True, capture_output=True, timeout=300
    )


@dataclass
class Up:
    url: str
    curl: str = ""  # the curl line printed after the URL, stripped
    output: list[str] = field(default_factory=list)


@asynccontextmanager
async def infergraph_up(example: str, state_dir: Path) -> AsyncIterator[Up]:
    """`infergraph up examples/<example> --port 0` until its graph is ready; stopped after."""
    env = {**os.environ, "XDG_RUNTIME_DIR": str(state_dir)}  # its own state file
    process = await asyncio.create_subprocess_exec(
        str(INFERGRAPH), "up", str(EXAMPLES / example), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=env, start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    up = Up(url="")
    prefix = "graph "
    try:
        async with asyncio.timeout(READY_SECONDS):
            while not up.curl:
                line = (await process.stdout.readline()).decode()
                assert line, "infergraph up exited before ready:\n" + "".join(up.output[-30:])
                up.output.append(line)
                if line.startswith(prefix) and " ready at " in line:
                    up.url = line.split(" ready at ")[1].strip()
                elif up.url and line.startswith("  curl "):
                    up.curl = line.strip()
        drain = asyncio.ensure_future(_collect(process.stdout, up.output))
        yield up
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
    await drain


async def _collect(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode())


async def post(url: str, data: bytes) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers={"Content-Type": "application/json"}) as response,
    ):
        return response.status, orjson.loads(await response.read())


NOT_JSON = b"not json"
WRONG_SHAPE = orjson.dumps({"instances": [[1.0, 2.0]]})  # every example's models want more

# example -> (status, causes) for a body with the wrong shape: the answer names one of the causes.
# The sklearn runtime (KServe's own server) answers a feature-count mismatch with 500 and
# scikit-learn's reason; the example's own transformer validates its input and answers 400.
WRONG_SHAPE_ANSWERS = {
    "digits-pipeline": (
        500,
        ("digit-high: X has 2 features, but LogisticRegression is expecting",),
    ),
    "iris-ensemble": (500, ("iris-logreg: X has 2 features, but LogisticRegression is expecting",)),
    "iris-transformer": (400, ("iris-scaler: instances[0] must be 4 numbers, got [1.0, 2.0]",)),
    # KServe's transformer component (a kserve.Model with preprocess) answers its own errors.
    "iris-kserve-transformer": (500, ("ValueError : zip() argument 2 is longer than argument 1",)),
    # The splitter sends the request to either model, so either one's reason may come back.
    "wine-canary": (
        500,
        (
            "wine-v1: X has 2 features, but StandardScaler is expecting 13",
            "wine-v2: X has 2 features, but RandomForestClassifier is expecting 13",
        ),
    ),
    # A gRPC step needs a v2 request to make tensors of: the router refuses a v1 body itself.
    "iris-grpc": (400, ("a gRPC v2 model needs a v2 inference request",)),
    # The guard (a kserve.Model of the example's) wants an OpenAI request.
    "llm-stream": (400, ('prompt-guard: expected an OpenAI request, {"messages": ',)),
}

# A body that is not JSON: the first (Hard) step's model server refuses it, in its own words;
# in front of a gRPC model the router refuses it before any call.
MODEL_SERVER_NOT_JSON = (
    "Unrecognized request format: invalid literal, expected 'null': line 1 column 1 (char 0)"
)
NOT_JSON_ANSWERS = {
    example: MODEL_SERVER_NOT_JSON for example in WRONG_SHAPE_ANSWERS if example != "iris-grpc"
} | {"iris-grpc": "the body is not JSON"}


async def run_curl(curl: str) -> tuple[int, str]:
    """The printed command through a shell, as a reader pastes it; -w adds the status."""
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", curl + " -w '\\n%{http_code}'",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    body, _, status = out.decode().rpartition("\n")
    return int(status), body


ZEN_SAMPLE = "better than complicated. Flat is better than ugly. Explicit is better than"

# What the sample request of each example gets (the digits sample is a 7: the specialist says).
SAMPLE_ANSWERS: dict[str, object] = {
    "digits-pipeline": {"predictions": [7]},
    "iris-ensemble": {
        "logreg": {"predictions": [0]},
        "tree": {"predictions": [0]},
        "knn": {"predictions": [0]},
    },
    "iris-transformer": {"predictions": [2]},
    "iris-kserve-transformer": {"predictions": [2]},
    "wine-canary": {"predictions": [0]},
    "iris-grpc": {
        "model_name": "iris",
        "outputs": [{"name": "output-0", "datatype": "INT64", "shape": [1], "data": [2]}],
    },
    # An OpenAI chat completion: the Zen of Python's Markov chain goes on from "Beautiful is"
    # (seeded by the prompt, so always these 12 words; max_tokens 12 cut it, so "length").
    "llm-stream": {
        "object": "chat.completion",
        "model": "zen-writer",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ZEN_SAMPLE},
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
    },
}


def test_every_runnable_example_is_covered() -> None:
    # KServe's own doc examples (kserve/) are graphs only: they have no models to run.
    runnable = {p.parent.name for p in EXAMPLES.glob("*/*.yaml") if p.parent.name != "kserve"}
    assert runnable == set(WRONG_SHAPE_ANSWERS) == set(SAMPLE_ANSWERS) == set(NOT_JSON_ANSWERS)


@pytest.mark.parametrize("example", sorted(WRONG_SHAPE_ANSWERS))
async def test_the_printed_curl_line_works_and_unreadable_bodies_fail_with_their_cause(
    example: str, tmp_path: Path
) -> None:
    async with infergraph_up(example, tmp_path) as up:
        # One `up` per example serves both checks: model servers take seconds to start.
        assert up.curl.startswith(f"curl -s -X POST {up.url} ")
        status, body = await run_curl(up.curl)
        assert status == 200, body
        answer = orjson.loads(body)
        answer.pop("id", None)  # a v2 answer's request id (an OpenAI answer's too) is new each time
        answer.pop("created", None)  # an OpenAI answer's time
        for output in answer.get("outputs", []):
            output.pop("parameters", None)
        assert answer == SAMPLE_ANSWERS[example]

        status, body = await post(up.url, NOT_JSON)
        assert status == 400, body
        assert NOT_JSON_ANSWERS[example] in str(body.get("cause", body["error"]))
        status, body = await post(up.url, WRONG_SHAPE)
        expected_status, causes = WRONG_SHAPE_ANSWERS[example]
        assert status == expected_status, body
        said = str(body.get("cause", body["error"]))
        assert any(cause in said for cause in causes), said
    # Model servers' own warnings reach `up`'s output: none may be logged per request.
    assert [line for line in up.output if "Warning" in line] == []


async def test_the_openai_client_streams_a_chat_completion_from_the_llm_example(
    tmp_path: Path,
) -> None:
    async with infergraph_up("llm-stream", tmp_path) as up:
        # The official client, pointed at the router: the graph answers every POST.
        client = openai.AsyncOpenAI(base_url=up.url.rstrip("/") + "/openai/v1", api_key="unused")
        try:
            stream = await client.chat.completions.create(
                model="data-writer",
                messages=[{"role": "user", "content": "The data"}],
                max_tokens=15,
                stream=True,
            )
            chunks = [chunk async for chunk in stream]
            # The guard's verdict stops a blocked prompt before any generator.
            status, body = await post(
                up.url,
                orjson.dumps(
                    {
                        "model": "zen-writer",
                        "messages": [{"role": "user", "content": "my password"}],
                    }
                ),
            )
        finally:
            await client.close()
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    # One chunk per word from the generator trained on dataset descriptions, as it generated them.
    assert len(pieces) == 15
    assert len("".join(pieces).split()) == 15
    assert "".join(pieces).strip() != ZEN_SAMPLE
    assert {c.model for c in chunks} == {"data-writer"}
    assert chunks[-1].choices[0].finish_reason == "length"
    assert (status, body) == (200, {"verdict": "block", "reason": "mentions 'password'"})
