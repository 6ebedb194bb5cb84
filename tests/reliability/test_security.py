"""Security promises: bearer tokens, body limits, header hygiene, targets only from the graph."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support import Backend, StartRouter, host_port, read_answer


def seq(url: str) -> dict[str, Any]:
    return {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceUrl": url}]}}}


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        ("Bearer s3cret-token", 200),
        (None, 401),
        ("Bearer wrong", 401),
        ("Basic czNjcmV0LXRva2Vu", 401),
        ("Bearer s3cret-token-and-more", 401),
    ],
    ids=["valid", "missing", "wrong", "not-bearer", "prefix-of-longer"],
)
async def test_auth_token_file(
    backend: Backend,
    router: StartRouter,
    tmp_path: Path,
    authorization: str | None,
    status: int,
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    headers = {"Authorization": authorization} if authorization else {}
    async with router(seq(backend.at("/echo/a")), args=["--auth-token-file", str(token)]) as r:
        got, body, response_headers = await r.post({"instances": [1]}, headers=headers)
        async with aiohttp.ClientSession() as s, s.get(r.url + "/readyz") as ready:
            assert ready.status == 200  # probes need no token
    assert got == status
    if status == 401:
        assert body["error"] == "Failed to process request"
        assert "Bearer" in body["cause"]
        assert response_headers["WWW-Authenticate"] == "Bearer"
        assert backend.calls == []


async def test_unreadable_token_file_refuses_to_start(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "--graph-json", orjson.dumps(seq("http://127.0.0.1:9/")),
        "--auth-token-file", str(tmp_path / "missing"), stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert "--auth-token-file" in err.decode()


async def test_body_over_the_limit_is_a_413(backend: Backend, router: StartRouter) -> None:
    async with router(seq(backend.at("/echo/a")), args=["--max-body-bytes", "1000"]) as r:
        status, body, _ = await r.post(b'{"instances": "' + b"x" * 2000 + b'"}')
        ok, _, _ = await r.post({"instances": [1]})
    assert status == 413
    assert "exceeds 1000 bytes" in body["cause"]
    assert backend.calls[-1]["path"] == "/echo/a"  # only the small request got through
    assert ok == 200


async def test_hop_by_hop_headers_never_forwarded_even_if_patterns_match_all(
    backend: Backend, router: StartRouter
) -> None:
    async with router(seq(backend.at("/headers")), env={"PROPAGATE_HEADERS": ".*"}) as r:
        _, body, _ = await r.post(
            {"instances": [1]},
            headers={"X-Custom": "yes", "Connection": "keep-alive", "Keep-Alive": "timeout=5",
                     "Upgrade": "h2c", "Proxy-Authorization": "secret", "TE": "trailers"},
        )  # fmt: skip
    sent = {k.lower(): v for k, v in body["headers"].items()}
    assert sent["x-custom"] == "yes"
    for hop in ("keep-alive", "upgrade", "proxy-authorization", "te"):
        assert hop not in sent, hop


async def test_requests_cannot_choose_the_target(backend: Backend, router: StartRouter) -> None:
    other = f"{backend.url}/echo/elsewhere"
    async with router(seq(backend.at("/echo/graph"))) as r, aiohttp.ClientSession() as s:
        body = {"serviceUrl": other, "nodeName": "x", "instances": [1]}
        headers = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
        async with s.post(r.url + "/echo/elsewhere", json=body, headers=headers) as response:
            answer = await response.json()
    assert answer["model"] == "graph"
    assert [c["path"] for c in backend.calls] == ["/echo/graph"]


async def test_headers_named_in_connection_are_hop_by_hop(
    backend: Backend, router: StartRouter
) -> None:
    # Raw bytes: a client library would rewrite the Connection header.
    async with router(seq(backend.at("/headers")), env={"PROPAGATE_HEADERS": ".*"}) as r:
        reader, writer = await asyncio.open_connection(*host_port(r.url))
        writer.write(
            b"POST / HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
            b"Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nX-End: kept\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )
        answer = await asyncio.wait_for(read_answer(reader), 10)
        writer.close()
    assert answer.status == 200
    sent = {k.lower(): v for k, v in orjson.loads(answer.body)["headers"].items()}
    assert sent["x-end"] == "kept"
    assert "x-hop" not in sent
    assert "connection" not in sent or "x-hop" not in sent["connection"].lower()


async def test_expect_continue_over_the_limit_gets_413_and_no_100(
    backend: Backend, router: StartRouter
) -> None:
    async with router(seq(backend.at("/echo/a")), args=["--max-body-bytes", "1000"]) as r:
        reader, writer = await asyncio.open_connection(*host_port(r.url))
        writer.write(
            b"POST / HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
        )  # and no body: a client that sees the 413 first never sends it
        answer = await asyncio.wait_for(read_answer(reader), 10)
        writer.close()
        ok, _, _ = await r.post({"instances": [1]})
    assert answer.status == 413  # the first thing written: no "100 Continue" before it
    assert answer.headers["content-type"] == "application/json"
    cause = orjson.loads(answer.body)["cause"]
    assert "5000 bytes exceeds 1000 bytes" in cause
    assert answer.headers["connection"] == "close"  # the unsent body cannot follow on it
    assert backend.calls[-1]["body"] == b'{"instances":[1]}'
    assert len(backend.calls) == 1
    assert ok == 200


async def test_kserve_documented_invalid_pattern_is_logged_not_fatal(
    backend: Backend, router: StartRouter
) -> None:
    # KServe's docs show PROPAGATE_HEADERS="*Trace-Id*", which Go's regexp refuses: KServe's
    # router logs it and goes on, so a copied config must start here too.
    env = {"PROPAGATE_HEADERS": "*Trace-Id*,X-Keep"}
    async with router(seq(backend.at("/headers")), env=env) as r:
        _, body, _ = await r.post({"instances": [1]}, headers={"X-Keep": "1", "X-Trace-Id": "2"})
        r.process.terminate()
        await asyncio.wait_for(r.process.wait(), 15)
        assert r.process.stderr is not None
        log = (await r.process.stderr.read()).decode()
    sent = {k.lower() for k in body["headers"]}
    assert "x-keep" in sent
    assert "x-trace-id" not in sent
    [line] = [line for line in log.splitlines() if "*Trace-Id*" in line]
    assert orjson.loads(line)["level"] == "ERROR"
    assert "skipped" in line


async def test_expect_continue_without_the_token_gets_401_and_no_100(
    backend: Backend, router: StartRouter, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    async with router(seq(backend.at("/echo/a")), args=["--auth-token-file", str(token)]) as r:
        reader, writer = await asyncio.open_connection(*host_port(r.url))
        writer.write(
            b"POST / HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        )
        answer = await asyncio.wait_for(read_answer(reader), 10)
        writer.close()
    assert answer.status == 401  # no "100 Continue" invited a body that would be refused
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in orjson.loads(answer.body)["cause"]
    assert backend.calls == []
