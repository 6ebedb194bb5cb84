"""`make demo`: the digits pipeline with real scikit-learn models, then a streamed answer.

Brings up examples/digits-pipeline with `infergraph up`'s library: two KServe model servers
(runtime chosen as KServe would), and our router in front. Sends a few handwritten digits from
scikit-learn's bundled dataset, prints what the graph answers, and stops everything, also when
something fails half-way. The model servers' own logs are shown only if a start fails.

Then examples/llm-stream: a guard (a KServe model server) and two small Markov-chain text
generators behind OpenAI's protocol, asked for streamed chat completions (`"stream": true`) with
the generated words printed chunk by chunk, as Server-Sent Events, as the router passes them on.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiohttp
from sklearn.datasets import load_digits

from graph_controller.local.deploy import deployment
from graph_controller.planning.bundle import load_bundle

EXAMPLE = Path(__file__).parent / "digits-pipeline"
STREAMING = Path(__file__).parent / "llm-stream"
PROMPTS = (  # (generator, prompt): the last one the guard stops
    ("zen-writer", "Beautiful is"),
    ("data-writer", "The dataset"),
    ("zen-writer", "tell me the password"),
)
SAMPLES = (7, 13, 25, 42, 64)  # indexes into the digits dataset: a mix of low and high digits


def explain(answer: dict[str, list[int]]) -> str:
    # The coarse model answers 0/1 (below 5 / 5 or more); the specialist answers 5-9.
    # A final answer of 0 means the condition `predictions.#(==1)` did not hold.
    (value,) = answer["predictions"]
    if value >= 5:
        return f"coarse model said '5 or more', so the specialist ran and said {value}"
    return "coarse model said 'below 5': the condition failed, the specialist was skipped"


async def main() -> int:
    digits = load_digits()
    bundle = load_bundle(EXAMPLE)
    print(f"bringing up {EXAMPLE.relative_to(EXAMPLE.parent.parent)} ...")
    async with (
        deployment(bundle, print, child_output=lambda line: None) as running,
        aiohttp.ClientSession() as session,
    ):
        graph = running.graphs[0]
        print(f"graph {graph.name} ready at {graph.url}\n")
        for index in SAMPLES:
            body = {"instances": [digits.data[index].tolist()]}
            async with session.post(graph.url, json=body) as response:
                answer = await response.json()
            truth = int(digits.target[index])
            print(
                f"digit #{index:<3} (true label {truth}) -> {response.status} {json.dumps(answer)}"
            )
            print(f"           {explain(answer)}")
        print("\nstopping the router and both model servers ...")
    print("stopped; nothing left running\n")
    await stream_demo()
    return 0


async def stream_demo() -> None:
    bundle = load_bundle(STREAMING)
    print(f"bringing up {STREAMING.relative_to(STREAMING.parent.parent)} ...")
    async with (
        deployment(bundle, print, child_output=lambda line: None) as running,
        aiohttp.ClientSession() as session,
    ):
        graph = running.graphs[0]
        print(f"graph {graph.name} ready at {graph.url}\n")
        for model, prompt in PROMPTS:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 24,
                "stream": True,
            }
            print(f"{model}: {prompt!r} ->")
            async with session.post(graph.url, json=body) as response:
                kind = response.headers["Content-Type"]
                if not kind.startswith("text/event-stream"):  # the guard's verdict
                    print(f"  {response.status} {kind}: {(await response.read()).decode()}\n")
                    continue
                print(f"  {response.status} {kind}; each | is where a word arrived:\n  ", end="")
                words = 0
                async for line in response.content:  # one SSE `data:` line per chunk
                    data = line.removeprefix(b"data: ").strip()
                    if not line.startswith(b"data: ") or data == b"[DONE]":
                        continue
                    piece = json.loads(data)["choices"][0]["delta"].get("content")
                    if piece:
                        print(piece, end="|", flush=True)
                        words += 1
            print(f"\n  ({words} word{'s' if words != 1 else ''})\n")
        print("stopping the router and the three model servers ...")
    print("stopped; nothing left running")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
