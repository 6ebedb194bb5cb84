"""`python -m graph_controller.model_servers.openai_server`: a text generator, OpenAI's way.

KServe's ModelServer serves OpenAI's protocol (`/openai/v1/chat/completions`,
`/openai/v1/completions`) only through `kserve.protocol.rest.openai`, whose request types come
from vLLM: far too heavy for a local model. This server speaks the same endpoints for a small
Python generator class, so a graph step with `openai: chat` reaches a real model locally.

The model folder (`--model_dir`, from storageUri) holds the user's module and `--model_class
module:Class` names the class, as for the `custom` runtime. It is built as `Class(name)`, gets
`model_dir` set, then `load()`; it must have `default_max_tokens` (an int: the length when a
request gives no `max_tokens`) and `generate(prompt, max_tokens)`, returning the generated text
as an iterable (or async iterable) of pieces, at most `max_tokens` of them: a `ValueError` from it
is the client's fault (400). A chat's prompt is the class's `apply_chat_template(messages)` if it
has one, else the messages' contents joined by newlines.

What it answers, as OpenAI does: a `chat.completion` / `text_completion` object, or with
`"stream": true` Server-Sent Events, one `chat.completion.chunk` (or `text_completion`) per piece,
a last chunk with `finish_reason` (`length` when `max_tokens` pieces came, else `stop`), then
`data: [DONE]`. Errors are `{"error": {"message", "type", "param", "code"}}`: 400 for a body that
is not a valid request, 404 (`model_not_found`) when `model` is not this server's model. Request
fields beyond those below are refused by name, never ignored; `usage` is left out (the model has
no tokenizer to count a prompt with). KServe's v1 protocol is served too: the model's readiness
(`GET /v1/models/<name>`, what `infergraph up` probes) and `:predict` with `{"instances":
["<prompt>", ...]}`, answered as `{"predictions": ["<text>", ...]}`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import logging
import sys
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from typing import Any, Literal, Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError


class TextGenerator(Protocol):
    default_max_tokens: int

    def generate(self, prompt: str, max_tokens: int) -> Iterable[str] | AsyncIterable[str]: ...


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: StrictStr
    stream: StrictBool = False
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    # OpenAI's default; more choices than one would need as many generations.
    n: StrictInt = Field(default=1, ge=1, le=1)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: StrictStr


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(_Request):
    messages: list[Message] = Field(min_length=1)
    # OpenAI's newer name for max_tokens; the openai client sends either.
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)


class CompletionRequest(_Request):
    prompt: StrictStr


R = TypeVar("R", bound=_Request)


class RequestError(Exception):
    """An OpenAI error answer: its HTTP status and the `error` object's fields."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> web.Response:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        error = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return web.json_response({"error": error}, status=self.status)


def _validation_error(error: ValidationError) -> RequestError:
    first = error.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    if first["type"] == "extra_forbidden":
        message = f"unsupported field '{param}': this server does not implement it"
    else:
        message = f"{param}: {first['msg']}" if param else first["msg"]
    return RequestError(400, message, param=param)


async def _read(request: web.Request, kind: type[R]) -> R:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(400, f"the body is not JSON: {error}") from None
    try:
        return kind.model_validate(body)
    except ValidationError as error:
        raise _validation_error(error) from None


class OpenAIServer:
    """The aiohttp application around one loaded generator named `name`."""

    def __init__(self, name: str, model: TextGenerator) -> None:
        self.name = name
        self.model = model
        self.created = int(time.time())

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_errors])
        app.router.add_post("/openai/v1/chat/completions", self.chat)
        app.router.add_post("/openai/v1/completions", self.completions)
        app.router.add_get("/openai/v1/models", self.models)
        app.router.add_get("/v1/models/{name}", self.ready)
        app.router.add_post("/v1/models/{name}:predict", self.predict)
        return app

    def _check_model(self, wanted: str) -> None:
        if wanted != self.name:
            raise RequestError(
                404, f"model '{wanted}' does not exist; this server serves '{self.name}'",
                param="model", code="model_not_found",
            )  # fmt: skip

    def _chat_prompt(self, messages: list[Message]) -> str:
        template = getattr(self.model, "apply_chat_template", None)
        plain = [{"role": m.role, "content": m.text()} for m in messages]
        if callable(template):
            prompt = template(plain)
            if not isinstance(prompt, str):
                raise TypeError(f"{self.name}: apply_chat_template returned {type(prompt)}")
            return prompt
        return "\n".join(m["content"] for m in plain)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await _read(request, ChatRequest)
        self._check_model(body.model)
        limit = body.max_completion_tokens or body.max_tokens or self.model.default_max_tokens
        pieces = await self._start(self._chat_prompt(body.messages), limit)
        return await self._answer(request, body.stream, "chat", pieces, limit)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await _read(request, CompletionRequest)
        self._check_model(body.model)
        limit = body.max_tokens or self.model.default_max_tokens
        pieces = await self._start(body.prompt, limit)
        return await self._answer(request, body.stream, "completions", pieces, limit)

    async def _start(self, prompt: str, limit: int) -> _Pieces:
        """The generation with its first piece drawn, so that a refused prompt is a 400 answer
        rather than a stream that breaks after its headers."""
        try:
            pieces = _Pieces(self.model.generate(prompt, limit), limit)
            await pieces.prime()
        except ValueError as error:
            raise RequestError(400, f"{self.name}: {error}") from None
        return pieces

    async def _answer(
        self,
        request: web.Request,
        stream: bool,
        kind: Literal["chat", "completions"],
        pieces: _Pieces,
        limit: int,
    ) -> web.StreamResponse:
        chat = kind == "chat"
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        head = {
            "id": ident,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.name,
        }
        if not stream:
            text = "".join([piece async for piece in pieces])
            if chat:
                choice: dict[str, Any] = {"message": {"role": "assistant", "content": text}}
                head["object"] = "chat.completion"
            else:
                choice = {"text": text}
            finish = _finish_reason(pieces.count, limit)
            return web.json_response(
                {
                    **head,
                    "choices": [{"index": 0, **choice, "logprobs": None, "finish_reason": finish}],
                }
            )
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        async def send(choice: Mapping[str, Any], finish: str | None = None) -> None:
            event = {
                **head,
                "choices": [{"index": 0, **choice, "logprobs": None, "finish_reason": finish}],
            }
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")

        try:
            if chat:  # OpenAI's first chunk gives the role alone
                await send({"delta": {"role": "assistant", "content": ""}})
            async for piece in pieces:
                await send({"delta": {"content": piece}} if chat else {"text": piece})
            last: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
            await send(last, _finish_reason(pieces.count, limit))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client left: the generation stops here (closed below)
        except Exception:
            # The status is sent: closing without the last chunk makes clients see a cut
            # stream, never a short answer that looks complete.
            logging.getLogger(__name__).exception("%s: the generation failed mid-stream", self.name)
            if request.transport is not None:
                request.transport.close()
        finally:
            await pieces.aclose()
        return response

    async def models(self, request: web.Request) -> web.Response:
        model = {"id": self.name, "object": "model", "created": self.created, "owned_by": "user"}
        return web.json_response({"object": "list", "data": [model]})

    async def ready(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self._check_model(name)
        return web.json_response({"name": name, "ready": True})

    async def predict(self, request: web.Request) -> web.Response:
        self._check_model(request.match_info["name"])
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError) as error:
            raise RequestError(400, f"the body is not JSON: {error}") from None
        instances = body.get("instances") if isinstance(body, dict) else None
        if not (isinstance(instances, list) and all(isinstance(i, str) for i in instances)):
            wanted = '{"instances": ["<prompt>", ...]}'
            raise RequestError(
                400, f"{self.name}: expected {wanted}, got {str(body)[:80]}", param="instances"
            )
        texts = []
        for prompt in instances:
            pieces = await self._start(prompt, self.model.default_max_tokens)
            texts.append("".join([piece async for piece in pieces]))
        return web.json_response({"predictions": texts})


def _finish_reason(count: int, limit: int) -> str:
    return "length" if count >= limit else "stop"


class _Pieces:
    """The generator's pieces as one async iterator, counted, with the first drawn ahead; at most
    `limit` of them, whatever the generator does, so `max_tokens` holds."""

    def __init__(self, source: Iterable[str] | AsyncIterable[str], limit: int) -> None:
        self._iterator: AsyncGenerator[str] = _as_async(source)
        self._limit = limit
        self._first: list[str] | None = None
        self.count = 0

    async def prime(self) -> None:
        try:
            self._first = [await anext(self._iterator)]
        except StopAsyncIteration:
            self._first = []

    def __aiter__(self) -> AsyncIterator[str]:
        return self._pieces()

    async def aclose(self) -> None:
        """Stop the model's generator now, not whenever it is garbage collected."""
        await self._iterator.aclose()

    async def _pieces(self) -> AsyncIterator[str]:
        for piece in self._first or []:
            self.count += 1
            yield piece
        if self._first == []:
            return
        async for piece in self._iterator:
            if self.count >= self._limit:
                return
            self.count += 1
            yield piece


async def _as_async(source: Iterable[str] | AsyncIterable[str]) -> AsyncGenerator[str]:
    try:
        if isinstance(source, AsyncIterable):
            async for piece in source:
                yield _text(piece)
            return
        for piece in source:
            yield _text(piece)
            await asyncio.sleep(0)  # a synchronous generator still lets each piece go out alone
    finally:
        # Closing this wrapper does not close the model's own generator: that is done here.
        close = getattr(source, "aclose", None) or getattr(source, "close", None)
        if close is not None:
            result = close()
            if inspect.isawaitable(result):
                await result


def _text(piece: object) -> str:
    if not isinstance(piece, str):
        raise TypeError(f"generate() yielded {type(piece).__name__}, not str")
    return piece


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as error:
        return error.response()
    except web.HTTPException:
        raise
    except Exception as error:  # the user's model failed before the answer began: say how
        logging.getLogger(__name__).exception("%s %s failed", request.method, request.path)
        return RequestError(500, f"{type(error).__name__}: {error}").response()


def load_model(spec: str, model_dir: str, name: str) -> TextGenerator:
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise SystemExit(f"--model_class must be 'module:Class', got {spec!r}")
    sys.path.insert(0, model_dir)
    cls: Any = getattr(importlib.import_module(module_name), class_name, None)
    is_class = inspect.isclass(cls)  # kept apart: narrowing would make cls a type[object]
    if not is_class:
        raise SystemExit(
            f"--model_class {spec}: no class {class_name} in {model_dir}/{module_name}.py"
        )
    model: Any = cls(name)
    model.model_dir = model_dir
    model.load()
    default = getattr(model, "default_max_tokens", None)
    if not (
        isinstance(default, int) and default >= 1 and callable(getattr(model, "generate", None))
    ):
        raise SystemExit(
            f"--model_class {spec}: needs default_max_tokens (a positive int) and "
            "generate(prompt, max_tokens)"
        )
    generator: TextGenerator = model
    return generator


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Serve a Python text generator over OpenAI's protocol")
    p.add_argument("--model_name", required=True, help="the model's name (its InferenceService)")
    p.add_argument("--model_dir", required=True, help="the model's folder (from storageUri)")
    p.add_argument("--model_class", required=True, help="module:Class to serve")
    p.add_argument("--http_port", type=int, default=8080, help="port to listen on")
    p.add_argument("--bind_host", default="127.0.0.1", help="address to listen on")
    return p


def main() -> None:
    args = parser().parse_args()
    model = load_model(args.model_class, args.model_dir, args.model_name)
    app = OpenAIServer(args.model_name, model).app()
    web.run_app(app, host=args.bind_host, port=args.http_port, print=None)


if __name__ == "__main__":
    main()
