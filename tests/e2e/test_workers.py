"""`--workers N`: N processes serve one port; signals reach all; the pool stops together."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from router.workers import START_ATTEMPTS
from tests.support import LOOPBACK, Backend, free_port, processes, wait_ready


def children_of(pid: int) -> list[int]:
    return [child for child, parent, _ in processes() if parent == pid]


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def _start_pool(
    backend: Backend, port: int, *flags: str, stderr: int | None = None
) -> asyncio.subprocess.Process:
    """`python -m router --workers 2` with a 1-step Sequence to the backend's echo."""
    spec = {"nodes": {"root": {"routerType": "Sequence", "steps": [
        {"serviceUrl": backend.at("/echo/a")}]}}}  # fmt: skip
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "--graph-json", orjson.dumps(spec).decode(),
        "--host", LOOPBACK, "--port", str(port), "--workers", "2", *flags, stderr=stderr,
    )  # fmt: skip


async def test_two_workers_share_the_port_and_drain_together(backend: Backend) -> None:
    port = free_port()
    process = await _start_pool(backend, port, "--drain-seconds", "0.2")
    url = f"http://{LOOPBACK}:{port}"
    try:
        await wait_ready(url, process)
        async with asyncio.timeout(10):
            while len(children_of(process.pid)) < 2:  # noqa: ASYNC110 - polling /proc
                await asyncio.sleep(0.05)
        workers = children_of(process.pid)
        assert len(workers) == 2
        connector = aiohttp.TCPConnector(force_close=True)  # a new connection per request
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(30):
                async with session.post(url, json={"instances": [1]}) as response:
                    assert response.status == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
        assert not any(alive(pid) for pid in workers)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_stop_while_workers_are_starting_is_a_clean_exit(backend: Backend) -> None:
    # The workers are still importing when the stop arrives, before their own handlers exist:
    # the signal's default action ends them, and that is the stop that was asked for (exit 0).
    process = await _start_pool(backend, free_port())
    try:
        async with asyncio.timeout(10):
            while len(children_of(process.pid)) < 2:  # noqa: ASYNC110 - polling /proc
                await asyncio.sleep(0.005)
        workers = children_of(process.pid)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
        assert not any(alive(pid) for pid in workers)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_worker_that_dies_is_replaced(backend: Backend) -> None:
    port = free_port()
    process = await _start_pool(backend, port, "--drain-seconds", "0.2")
    url = f"http://{LOOPBACK}:{port}"
    try:
        await wait_ready(url, process)
        async with asyncio.timeout(20):
            while len(children_of(process.pid)) < 2:  # noqa: ASYNC110 - polling /proc
                await asyncio.sleep(0.05)
        first, second = children_of(process.pid)
        os.kill(first, signal.SIGKILL)
        async with asyncio.timeout(20):  # a replacement is started
            while not set(children_of(process.pid)) - {first, second}:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        os.kill(second, signal.SIGKILL)
        # Both original workers are dead: any answer now comes from a replacement.
        connector = aiohttp.TCPConnector(force_close=True)
        answered = 0
        async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(30):
            while answered < 10:
                try:
                    async with session.post(url, json={"instances": [1]}) as response:
                        assert response.status == 200
                        answered += 1
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)  # between the kill and a replacement listening
        assert not alive(first)
        assert not alive(second)
        assert len(children_of(process.pid)) == 2
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.slow
async def test_a_pool_whose_workers_cannot_start_gives_up_with_exit_1(backend: Backend) -> None:
    # Another program holds the port without SO_REUSEPORT: no worker can ever bind it.
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await _start_pool(backend, port, stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(process.communicate(), 90)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 1
    lines = [orjson.loads(line) for line in err.splitlines() if line.startswith(b"{")]
    retries = [line["worker"] for line in lines if "before listening" in line["msg"]]
    for worker in (0, 1):  # each retried with backoff, then the pool gave up
        assert retries.count(worker) >= START_ATTEMPTS - 1, retries
    assert "giving up" in lines[-1]["msg"]
    assert children_of(process.pid) == []
