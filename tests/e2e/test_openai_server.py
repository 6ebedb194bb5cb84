"""The OpenAI-compatible model server (graph_controller/model_servers/openai_server.py) on a real
port, spoken to by the official `openai` client and by plain HTTP for what the client hides (the
SSE lines, the error bodies). The graph around it is tests/e2e/test_examples_up.py's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp.test_utils import TestServer

from graph_controller.model_servers.openai_server import OpenAIServer, TextGenerator, load_model


class Echo:
    """Generates the prompt's words back, one piece each, at most max_tokens of them."""

    default_max_tokens = 3

    def __init__(self, name: str = "echo") -> None:
        self.name = name
        self.model_dir = ""
        self.prompts: list[str] = []

    def load(self) -> None:
        pass

    def generate(self, prompt: str, max_tokens: int) -> Iterator[str]:
        if "refuse" in prompt:
            raise ValueError("this prompt is refused")
        self.prompts.append(prompt)
        return iter([w + " " for w in prompt.split()][:max_tokens])


class AsyncTemplated(Echo):
    """An async generator, with its own chat template."""

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str:
        return " ".join(f"{m['role']}: {m['content']}" for m in messages)

    async def agenerate(self, prompt: str, max_tokens: int) -> AsyncIterator[str]:
        for piece in list(super().generate(prompt, max_tokens)):
            yield piece

    def generate(self, prompt: str, max_tokens: int) -> AsyncIterator[str]:  # type: ignore[override]
        return self.agenerate(prompt, max_tokens)


@asynccontextmanager
async def serving(model: TextGenerator, name: str = "echo") -> AsyncIterator[str]:
    server = TestServer(OpenAIServer(name, model).app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def post(url: str, body: bytes | dict[str, Any]) -> tuple[int, str, bytes]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with aiohttp.ClientSession() as session, session.post(url, data=data) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.read()


CHAT = {"model": "echo", "messages": [{"role": "user", "content": "one two three four five"}]}


@pytest.mark.parametrize(
    ("max_tokens", "text", "finish"),
    [(2, "one two ", "length"), (9, "one two three four five ", "stop")],
    ids=["cut-at-max-tokens", "ends-first"],
)
async def test_the_openai_client_streams_a_chat_completion(
    max_tokens: int, text: str, finish: str
) -> None:
    async with serving(Echo()) as url:
        client = openai.AsyncOpenAI(base_url=url + "/openai/v1", api_key="unused")
        try:
            stream = await client.chat.completions.create(
                model="echo",
                messages=[{"role": "user", "content": "one two three four five"}],
                max_tokens=max_tokens,
                stream=True,
            )
            chunks = [chunk async for chunk in stream]
        finally:
            await client.close()
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert "".join(pieces) == text
    assert len(pieces) == text.count(" ")  # one chunk per generated piece
    assert [c.choices[0].finish_reason for c in chunks][-1] == finish
    assert {c.model for c in chunks} == {"echo"}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1


async def test_whole_answers_without_stream_for_chat_and_completions() -> None:
    async with serving(Echo()) as url:
        client = openai.AsyncOpenAI(base_url=url + "/openai/v1", api_key="unused")
        try:
            chat = await client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "a b"}]
            )
            completion = await client.completions.create(model="echo", prompt="x y z w")
        finally:
            await client.close()
    assert chat.object == "chat.completion"
    assert chat.choices[0].message.content == "a b "
    assert chat.choices[0].finish_reason == "stop"
    # No max_tokens: the model's default_max_tokens (3) bounds it.
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "x y z "
    assert completion.choices[0].finish_reason == "length"


async def test_a_streamed_completion_is_sse_ending_with_done() -> None:
    async with serving(Echo()) as url:
        body = {"model": "echo", "prompt": "p q", "stream": True}
        status, kind, raw = await post(url + "/openai/v1/completions", body)
    assert (status, kind) == (200, "text/event-stream")
    events = [e.removeprefix(b"data: ") for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert [c["choices"][0]["text"] for c in chunks] == ["p ", "q ", ""]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "stop"]
    assert {c["object"] for c in chunks} == {"text_completion"}


async def test_an_async_generator_and_its_own_chat_template() -> None:
    model = AsyncTemplated()
    async with serving(model) as url:
        body = {**CHAT, "messages": [{"role": "system", "content": "s"}, CHAT["messages"][0]]}
        status, _, raw = await post(url + "/openai/v1/chat/completions", {**body, "stream": True})
    assert status == 200
    assert model.prompts == ["system: s user: one two three four five"]
    assert b'"content": "system: "' in raw


@pytest.mark.parametrize(
    ("path", "body", "status", "param", "message"),
    [
        ("chat/completions", b"not json", 400, None, "the body is not JSON"),
        ("chat/completions", {**CHAT, "temperature": 0.5}, 400, "temperature",
         "unsupported field 'temperature'"),
        ("chat/completions", {"model": "echo"}, 400, "messages", "messages: Field required"),
        ("chat/completions", {**CHAT, "max_tokens": 0}, 400, "max_tokens", "max_tokens: Input"),
        ("chat/completions", {**CHAT, "n": 2}, 400, "n", "n: Input should be less than"),
        ("chat/completions", {**CHAT, "model": "other"}, 404, "model",
         "model 'other' does not exist; this server serves 'echo'"),
        ("completions", {"model": "echo", "prompt": ["a"]}, 400, "prompt", "prompt: Input"),
        ("completions", {"model": "echo", "prompt": "please refuse", "stream": True}, 400, None,
         "echo: this prompt is refused"),
    ],
    ids=["not-json", "unsupported-field", "no-messages", "zero-max-tokens", "n", "wrong-model",
         "prompt-list", "model-refuses"],
)  # fmt: skip
async def test_bad_requests_get_openais_error_shape(
    path: str, body: bytes | dict[str, Any], status: int, param: str | None, message: str
) -> None:
    async with serving(Echo()) as url:
        got, kind, raw = await post(f"{url}/openai/v1/{path}", body)
    assert (got, kind.split(";")[0]) == (status, "application/json")
    error = orjson.loads(raw)["error"]
    assert error["message"].startswith(message), error
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["code"] == ("model_not_found" if status == 404 else None)


async def test_the_openai_client_raises_the_servers_reason() -> None:
    async with serving(Echo()) as url:
        client = openai.AsyncOpenAI(base_url=url + "/openai/v1", api_key="unused")
        try:
            with pytest.raises(openai.BadRequestError, match="unsupported field 'top_p'"):
                await client.chat.completions.create(
                    model="echo", messages=[{"role": "user", "content": "x"}], top_p=0.5
                )
        finally:
            await client.close()


async def test_kserve_v1_readiness_predict_and_the_model_list() -> None:
    async with serving(Echo()) as url, aiohttp.ClientSession() as session:
        async with session.get(url + "/v1/models/echo") as response:
            assert (response.status, await response.json()) == (
                200,
                {"name": "echo", "ready": True},
            )
        async with session.get(url + "/v1/models/other") as response:
            assert response.status == 404
        async with session.get(url + "/openai/v1/models") as response:
            assert [m["id"] for m in (await response.json())["data"]] == ["echo"]
        status, _, raw = await post(url + "/v1/models/echo:predict", {"instances": ["a b", "c"]})
        assert (status, orjson.loads(raw)) == (200, {"predictions": ["a b ", "c "]})
        status, _, raw = await post(url + "/v1/models/echo:predict", {"instances": [[1.0]]})
        assert status == 400
        assert orjson.loads(raw)["error"]["param"] == "instances"


def test_a_class_without_the_generator_interface_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain_model.py").write_text(
        "class Plain:\n"
        "    def __init__(self, name):\n        pass\n"
        "    def load(self):\n        pass\n"
    )
    with pytest.raises(SystemExit, match="needs default_max_tokens"):
        load_model("plain_model:Plain", str(tmp_path), "plain")
    with pytest.raises(SystemExit, match="no class Missing"):
        load_model("plain_model:Missing", str(tmp_path), "plain")


class Overflowing(Echo):
    """Ignores max_tokens; the server holds it. Breaks on a prompt saying so."""

    def generate(self, prompt: str, max_tokens: int) -> Iterator[str]:
        if "break" in prompt:
            raise RuntimeError("the table is gone")
        return iter(["w "] * 50)


async def test_max_tokens_holds_and_a_failing_model_is_a_500_in_openais_shape() -> None:
    async with serving(Overflowing()) as url:
        status, _, raw = await post(
            url + "/openai/v1/completions", {"model": "echo", "prompt": "x"}
        )
        assert status == 200
        answer = orjson.loads(raw)["choices"][0]
        assert (answer["text"], answer["finish_reason"]) == ("w w w ", "length")
        status, _, raw = await post(
            url + "/openai/v1/completions", {"model": "echo", "prompt": "break"}
        )
    assert status == 500
    error = orjson.loads(raw)["error"]
    assert (error["message"], error["type"]) == ("RuntimeError: the table is gone", "server_error")


class Endless(Echo):
    """An async generator that goes on until max_tokens, and says when it was stopped; on a
    prompt saying so, it fails after its first piece."""

    def __init__(self, name: str = "echo") -> None:
        super().__init__(name)
        self.closed = asyncio.Event()
        self.produced = 0

    def generate(self, prompt: str, max_tokens: int) -> AsyncIterator[str]:  # type: ignore[override]
        return self.pieces(prompt, max_tokens)

    async def pieces(self, prompt: str, max_tokens: int) -> AsyncIterator[str]:
        try:
            for _ in range(max_tokens):
                self.produced += 1
                yield "w "
                if "fail" in prompt:
                    raise RuntimeError("the table is gone")
                await asyncio.sleep(0)
        finally:
            self.closed.set()


async def test_a_client_that_hangs_up_stops_the_generation() -> None:
    model = Endless()
    async with serving(model) as url, aiohttp.ClientSession() as session:
        body = {"model": "echo", "prompt": "x", "stream": True, "max_tokens": 10**9}
        async with session.post(url + "/openai/v1/completions", json=body) as response:
            assert (await response.content.readline()).startswith(b"data: ")
        # Leaving the block closed the connection; the server's next write finds it gone.
        await asyncio.wait_for(model.closed.wait(), 30)
    assert model.produced < 10**9


async def test_a_generation_failing_mid_stream_cuts_the_stream() -> None:
    async with serving(Endless()) as url, aiohttp.ClientSession() as session:
        body = {"model": "echo", "prompt": "fail", "stream": True}
        async with session.post(url + "/openai/v1/completions", json=body) as response:
            assert response.status == 200  # sent with the first piece, before the failure
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
