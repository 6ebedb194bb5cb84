"""Fault injection: every node type against every backend fault, and client-side faults.

Backends misbehave for real on 127.0.0.1: a closed port, a raw TCP server that resets half-way
through an answer, one that answers too slowly or never, 5xx, invalid JSON, an oversized body.
For each case the router must answer the defined status with its `{"error", "cause"}` body
(KServe's text where KServe has the case) and the `node` and `step` fields, keep serving, and
leak nothing: the test process's open file descriptors and asyncio tasks are counted before and
after (router and backends run in this process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support import LOOPBACK, Backend, StartRouter, free_port, host_port, read_answer

MAX_BODY = 64 * 1024  # small limits keep the oversized cases fast
CLIENT_TIMEOUT = 1  # routerTimeouts.serviceClient, seconds


async def _raw_server(behaviour: str) -> tuple[asyncio.Server, str]:
    """A TCP server speaking just enough HTTP to misbehave in the way named."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            if behaviour == "reset":
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial')
                await writer.drain()
                writer.transport.abort()  # RST mid-answer
                return
            if behaviour == "hang":
                await reader.read()  # never answers; returns when the caller hangs up
        writer.close()

    server = await asyncio.start_server(handle, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://{LOOPBACK}:{port}/v1/models/m:predict"


@contextlib.asynccontextmanager
async def fault_url(backend: Backend, fault: str) -> AsyncIterator[str]:
    if fault in ("reset", "hang"):
        server, url = await _raw_server(fault)
        try:
            yield url
        finally:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        return
    paths = {
        "refused": None,
        "slow": "/slow/3000",
        "5xx": "/status/500",
        "invalid-json": "/text",
        "huge": f"/huge/{MAX_BODY * 4}",
    }
    path = paths[fault]
    yield backend.at(path) if path else f"http://{LOOPBACK}:{free_port()}/v1/models/m:predict"


def graph(router_type: str, url: str, ok_url: str) -> dict[str, Any]:
    step: dict[str, Any] = {"serviceUrl": url, "name": "faulty"}
    if router_type == "Switch":
        step["condition"] = "instances"
    if router_type == "Splitter":
        step["weight"] = 100
    steps = [step]
    if router_type == "Ensemble":
        steps.append({"serviceUrl": ok_url, "name": "fine"})
    return {
        "nodes": {"root": {"routerType": router_type, "steps": steps}},
        "routerTimeouts": {"serviceClient": CLIENT_TIMEOUT},
    }


# (status, cause fragment or None when the backend's own answer passes through, and a fragment
# of `detail`, where the router keeps its own sentence when `cause` is KServe's text)
GO_TIMEOUT = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
ROUTER_ERRORS: dict[str, tuple[int, str, str | None]] = {
    "refused": (502, ": connect: connection refused", "node 'root' step 'faulty': calling"),
    "reset": (502, 'Post "http://127.0.0.1:', "node 'root' step 'faulty': calling"),
    "slow": (504, GO_TIMEOUT, "node 'root' step 'faulty': "),
    "hang": (504, GO_TIMEOUT, "did not answer within 1s"),
    "huge": (502, "node 'root' step 'faulty': ", None),
}
PASSED_THROUGH: dict[tuple[str, str], tuple[int, str | None, str | None]] = {
    # KServe's semantics: a step's own non-2xx answer is the node's answer (Soft step) ...
    ("5xx", "Sequence"): (500, None, None),
    ("5xx", "Switch"): (500, None, None),
    ("5xx", "Splitter"): (500, None, None),
    # ... and an Ensemble merges it as that step's result.
    ("5xx", "Ensemble"): (200, None, None),
    ("invalid-json", "Sequence"): (200, None, None),  # bytes pass through untouched
    ("invalid-json", "Switch"): (200, None, None),
    ("invalid-json", "Splitter"): (200, None, None),
    ("invalid-json", "Ensemble"): (502, "node 'root' step 'faulty' did not answer JSON", None),
}
FAULTS = ["refused", "reset", "slow", "5xx", "invalid-json", "huge", "hang"]
TYPES = ["Sequence", "Switch", "Ensemble", "Splitter"]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settle() -> None:
    for _ in range(20):  # let closed transports and cancelled tasks finish
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("router_type", TYPES)
@pytest.mark.parametrize("fault", FAULTS)
async def test_backend_faults(
    backend: Backend, graph_server: Any, fault: str, router_type: str
) -> None:
    async with fault_url(backend, fault) as url:
        spec = graph(router_type, url, backend.at("/echo/fine"))
        async with graph_server(spec, max_body_bytes=MAX_BODY) as router_url:
            async with aiohttp.ClientSession() as session:
                await _post(session, router_url)  # warm-up: pools and caches exist first
                await settle()
                fds, tasks = open_fds(), len(asyncio.all_tasks())
                status, body = await _post(session, router_url)
                await settle()
                assert open_fds() <= fds, "file descriptors leaked"
                assert len(asyncio.all_tasks()) <= tasks, "asyncio tasks leaked"
            expected = ROUTER_ERRORS.get(fault) or PASSED_THROUGH[(fault, router_type)]
            assert status == expected[0], body
            if expected[1] is not None:
                assert body["error"] == "Failed to process request"
                assert (body["node"], body["step"]) == ("root", "faulty")
                assert expected[1] in body["cause"]
                if expected[2] is not None:
                    assert expected[2] in body["detail"]
            # Still serving: a healthy graph on the same router process answers.
            async with aiohttp.ClientSession() as session, session.get(router_url + "/readyz") as r:
                assert r.status == 200


async def _post(
    session: aiohttp.ClientSession, url: str, data: bytes | None = None
) -> tuple[int, Any]:
    body = data if data is not None else orjson.dumps({"instances": [[1, 2]]})
    async with session.post(url, data=body) as response:
        raw = await response.read()
        try:
            return response.status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return response.status, raw


SWITCH = {
    "nodes": {
        "root": {"routerType": "Switch", "steps": [{"serviceUrl": "{u}", "condition": "instances"}]}
    }
}


@pytest.mark.parametrize(
    ("body", "headers", "status", "cause"),
    [
        (b"{not json", {}, 400, "not valid JSON"),
        (b"", {}, 400, "not valid JSON"),
        (b'{"instances": [1]}', {"Content-Type": "text/plain"}, 200, None),
        (b"x" * (MAX_BODY + 1), {}, 413, "exceeds"),
    ],
    ids=["malformed-json", "empty-body", "wrong-content-type", "over-the-limit"],
)
async def test_client_faults(
    backend: Backend,
    graph_server: Any,
    body: bytes,
    headers: dict[str, str],
    status: int,
    cause: str | None,
) -> None:
    spec = orjson.loads(orjson.dumps(SWITCH).replace(b"{u}", backend.at("/echo/a").encode()))
    async with graph_server(spec, max_body_bytes=MAX_BODY) as url, aiohttp.ClientSession() as s:
        async with s.post(url, data=body, headers=headers) as response:
            assert response.status == status
            answer = await response.json()
        if cause is not None:
            assert cause in answer["cause"]
        async with s.post(url, json={"instances": [1]}) as response:
            assert response.status == 200  # still serving


async def test_slowloris_body_is_cut_at_server_read(backend: Backend, graph_server: Any) -> None:
    spec = {
        "nodes": {
            "root": {"routerType": "Sequence", "steps": [{"serviceUrl": backend.at("/echo/a")}]}
        },
        "routerTimeouts": {"serverRead": 1},
    }
    async with graph_server(spec) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        await writer.drain()
        for _ in range(3):  # trickle a byte now and then, never finishing the body
            await asyncio.sleep(0.4)
            writer.write(b" ")
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"serverRead" in answer
    assert backend.calls == []


def _read_bound_graph(backend: Backend) -> dict[str, Any]:
    # serverIdle far above serverRead: only serverRead may end these connections.
    return {
        "nodes": {
            "root": {"routerType": "Sequence", "steps": [{"serviceUrl": backend.at("/echo/a")}]}
        },
        "routerTimeouts": {"serverRead": 1, "serverIdle": 100},
    }


async def test_slowloris_headers_are_cut_at_server_read(
    backend: Backend, router: StartRouter
) -> None:
    # A real router process: serverRead over the headers is the server's (router.protocol).
    async with router(_read_bound_graph(backend)) as r:
        reader, writer = await asyncio.open_connection(*host_port(r.url))
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\n")
        answering = asyncio.ensure_future(read_answer(reader))
        for byte in b"X-Slow: " + b"1" * 100:  # a byte now and then, never ending the headers
            await asyncio.wait([answering], timeout=0.1)
            if answering.done():
                break  # writing on after the router closed would reset the connection
            writer.write(bytes([byte]))
            await writer.drain()
        answer = await asyncio.wait_for(answering, 10)
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert answer.status == 408
    assert answer.headers["connection"] == "close"
    body = orjson.loads(answer.body)
    assert body["error"]
    assert "headers not received within 1s (serverRead)" in body["cause"]
    assert rest == b""  # then closed
    assert backend.calls == []


async def test_silent_connection_is_closed_at_server_read_with_nothing_written(
    backend: Backend, router: StartRouter
) -> None:
    async with router(_read_bound_graph(backend)) as r:
        reader, writer = await asyncio.open_connection(*host_port(r.url))
        got = await asyncio.wait_for(reader.read(), 10)  # serverIdle (100 s) would time out
        writer.close()
    assert got == b""


async def test_kept_alive_connection_may_idle_past_server_read(
    backend: Backend, router: StartRouter
) -> None:
    # Between requests only serverIdle applies; serverRead starts with the next request's byte.
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    async with router(_read_bound_graph(backend)) as r:
        reader, writer = await asyncio.open_connection(*host_port(r.url))
        writer.write(request)
        first = await asyncio.wait_for(read_answer(reader), 10)
        await asyncio.sleep(1.5)  # longer than serverRead
        writer.write(request)
        second = await asyncio.wait_for(read_answer(reader), 10)
        writer.close()
    assert (first.status, second.status) == (200, 200)


async def test_client_disconnect_mid_request_leaves_nothing_running(
    backend: Backend, graph_server: Any
) -> None:
    spec = {
        "nodes": {
            "root": {"routerType": "Sequence", "steps": [{"serviceUrl": backend.at("/watch/3000")}]}
        }
    }
    async with graph_server(spec) as url:
        await settle()
        tasks = len(asyncio.all_tasks())
        host, port = url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)))
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        await asyncio.wait_for(backend.arrived.wait(), 5)
        sock.close()  # the client goes away while the step runs
        for _ in range(100):
            if backend.abandoned:
                break
            await asyncio.sleep(0.02)
        await settle()
        assert backend.abandoned == ["/watch/3000"]
        assert len(asyncio.all_tasks()) <= tasks
