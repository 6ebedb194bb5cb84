"""router.calls against real servers on 127.0.0.1: what a model service sees and gets back.

The client under the router changed from aiohttp's to rnet's (issue 15); these pin what must not
change with it: the headers a step receives, Content-Encoding decoded as before and counted
after decoding against the size limit, KServe's error texts, and a cancelled call hanging up on
the model at once.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from router.calls import HttpStepCaller, new_session
from router.errors import InvalidStepResponse, StepTimeout, StepUnreachable
from router.graph import Step, compile_graph
from schemas.valid_graph import validate_graph
from tests.support import LOOPBACK, Backend, free_port

JSON = {"Content-Type": "application/json"}
LIMIT = 64 * 1024


def step_for(url: str) -> Step:
    spec = {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceUrl": url}]}}}
    return compile_graph(validate_graph(spec)).root.steps[0]


@pytest.fixture
async def caller() -> AsyncIterator[HttpStepCaller]:
    caller = HttpStepCaller(new_session(16), LIMIT)
    yield caller
    caller.close()


async def serve(handler: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    return runner, f"http://{LOOPBACK}:{runner.addresses[0][1]}"


async def test_a_step_sees_only_the_body_its_headers_and_framing(
    backend: Backend, caller: HttpStepCaller
) -> None:
    headers = CIMultiDict([("Content-Type", "application/json"), ("X-Tag", "a"), ("X-Tag", "b")])
    reply = await caller(step_for(backend.at("/headers")), b"{}", headers, 5)
    assert reply.status == 200
    call = backend.calls[-1]
    names = {name.lower() for name in call["headers"]}
    # Nothing of the client's own: no User-Agent, Referer, Cookie or Accept; the codings asked
    # for are the ones it decodes, as aiohttp's client asked for them.
    assert names == {"host", "content-type", "content-length", "accept-encoding", "x-tag"}
    assert call["headers"]["Accept-Encoding"].replace(" ", "") == "gzip,deflate"
    assert call["body"] == b"{}"


async def test_repeated_and_non_ascii_headers_go_out_as_they_came(caller: HttpStepCaller) -> None:
    seen: list[list[tuple[bytes, bytes]]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(list(request.raw_headers))
        return web.json_response({})

    runner, url = await serve(handler)
    try:
        headers = CIMultiDict([("X-Tag", "a"), ("X-Tag", "b"), ("X-Name", "Zoë")])
        await caller(step_for(url + "/x"), b"{}", headers, 5)
    finally:
        await runner.cleanup()
    sent = [(k, v) for k, v in seen[0] if k.startswith(b"X-")]
    assert sent == [(b"X-Tag", b"a"), (b"X-Tag", b"b"), (b"X-Name", "Zoë".encode())]


async def test_gzip_answers_are_decoded_and_counted_decoded(caller: HttpStepCaller) -> None:
    async def handler(request: web.Request) -> web.Response:
        size = int(request.match_info["tail"])
        body = gzip.compress(b'{"p": "' + b"0" * size + b'"}')
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    runner, url = await serve(handler)
    try:
        reply = await caller(step_for(f"{url}/10"), b"{}", JSON, 5)
        assert reply.payload.raw == b'{"p": "0000000000"}'
        assert reply.json_content
        # Small on the wire, four times the limit once decoded: refused, not held in memory.
        with pytest.raises(InvalidStepResponse, match=f"more than {LIMIT} bytes"):
            await caller(step_for(f"{url}/{LIMIT * 4}"), b"{}", JSON, 5)
    finally:
        await runner.cleanup()


async def test_an_answer_declared_over_the_limit_is_refused(caller: HttpStepCaller) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (LIMIT + 1))

    runner, url = await serve(handler)
    try:
        with pytest.raises(InvalidStepResponse, match=f"answered {LIMIT + 1} bytes"):
            await caller(step_for(url + "/big"), b"{}", JSON, 5)
    finally:
        await runner.cleanup()


async def test_a_refused_connection_has_gos_text(caller: HttpStepCaller) -> None:
    port = free_port()
    url = f"http://{LOOPBACK}:{port}/v1/models/m:predict"
    with pytest.raises(StepUnreachable) as raised:
        await caller(step_for(url), b"{}", JSON, 5)
    reason = f"dial tcp {LOOPBACK}:{port}: connect: connection refused"
    assert raised.value.cause == f'Post "{url}": {reason}'
    assert raised.value.detail == (
        f"node 'root' step 0: calling {url} failed: "
        "ConnectionError: tcp connect error: Connection refused"
    )


async def test_a_connection_closed_before_any_answer_is_gos_eof(caller: HttpStepCaller) -> None:
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(close_at_once, LOOPBACK, 0)
    url = f"http://{LOOPBACK}:{server.sockets[0].getsockname()[1]}/m"
    try:
        with pytest.raises(StepUnreachable) as raised:
            await caller(step_for(url), b"{}", JSON, 5)
    finally:
        server.close()
    assert raised.value.cause == f'Post "{url}": EOF'
    assert raised.value.detail == (
        f"node 'root' step 0: calling {url} failed: RequestError: IncompleteMessage"
    )


async def test_a_late_answer_is_a_timeout_with_gos_text(
    backend: Backend, caller: HttpStepCaller
) -> None:
    url = backend.at("/watch/3000")
    with pytest.raises(StepTimeout) as raised:
        await caller(step_for(url), b"{}", JSON, 0.2)
    assert raised.value.cause == (
        f'Post "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    )


async def test_calls_whose_budgets_end_together_time_out_each_on_its_own(
    backend: Backend, caller: HttpStepCaller
) -> None:
    # Calls started together with one budget share a loop timer: the one that answers first
    # leaves it armed for the others, and it cancels only the calls still waiting.
    late, fast = step_for(backend.at("/watch/3000")), step_for(backend.at("/headers"))
    calls = [caller(late, b"{}", JSON, 0.3), caller(late, b"{}", JSON, 0.3)]
    calls.append(caller(fast, b"{}", JSON, 0.3))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert [type(result).__name__ for result in results] == ["StepTimeout", "StepTimeout", "Reply"]
    # Nothing of the shared timer is left to cancel this task later.
    await asyncio.sleep(0.05)
    assert (await caller(fast, b"{}", JSON, 5)).status == 200


async def test_a_cancelled_call_hangs_up_on_the_model(
    backend: Backend, caller: HttpStepCaller
) -> None:
    # A client that went away, a quorum reached: the model must see its connection close, not
    # work on for nobody (a client that only forgets the call leaves it running in Rust).
    call = asyncio.ensure_future(caller(step_for(backend.at("/watch/3000")), b"{}", JSON, 30))
    await asyncio.wait_for(backend.arrived.wait(), 10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(200):  # bounded: 2 s, against the backend's 3 s of work
        if backend.abandoned:
            break
        await asyncio.sleep(0.01)
    assert backend.abandoned == ["/watch/3000"]


async def test_redirects_are_followed_as_before(caller: HttpStepCaller) -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.path == "/old":
            raise web.HTTPTemporaryRedirect("/new")
        return web.json_response({"path": request.path, "body": (await request.read()).decode()})

    runner, url = await serve(handler)
    try:
        reply = await caller(step_for(url + "/old"), b'{"a": 1}', JSON, 5)
    finally:
        await runner.cleanup()
    assert reply.status == 200
    assert reply.payload.json() == {"path": "/new", "body": '{"a": 1}'}


async def test_headers_changed_between_calls_go_out_changed(
    backend: Backend, caller: HttpStepCaller
) -> None:
    # The converted headers are reused only for a read-only mapping, never for one that may
    # have changed since the last call (a recorder adding traceparent to its copy).
    headers = {"Content-Type": "application/json", "X-Tag": "a"}
    await caller(step_for(backend.at("/headers")), b"{}", headers, 5)
    headers["X-Tag"] = "b"
    await caller(step_for(backend.at("/headers")), b"{}", headers, 5)
    assert [call["headers"]["X-Tag"] for call in backend.calls] == ["a", "b"]
