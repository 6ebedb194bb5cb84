"""A fault-injecting HTTP proxy in front of the envtest API server (aiohttp, 127.0.0.1).

The controller's kubeconfig points at the proxy (plain HTTP, no credentials); the proxy adds
the admin token and forwards over TLS, streaming watch responses through. Rules answer
chosen requests with an error instead of forwarding, so retries are tested against the real
server's behaviour for everything else. Runs its own event loop on a thread.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

from tests.k8s.envtest import ControlPlane, kubeconfig

START_TIMEOUT = 10.0
# The `reason` the API server puts in a Status with that code.
REASONS = {409: "Conflict", 410: "Expired", 429: "TooManyRequests", 503: "ServiceUnavailable"}


@dataclass
class Rule:
    """Answer the first `times` requests matching `match(method, path, content_type)` with
    `status` (a Kubernetes Status body), then let them through."""

    match: Callable[[str, str, str], bool]
    status: int
    times: int
    hits: list[str] = field(default_factory=list)
    # As a watch does: 200 and one ERROR event carrying `status` (410: "too old, re-list").
    as_watch_event: bool = False
    omit_reason: bool = False  # a Status without `reason`, which the client's Watch trips on


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int
    injected: bool


class FaultProxy:
    def __init__(self, plane: ControlPlane, rules: list[Rule], port: int = 0) -> None:
        self.plane, self.rules = plane, rules
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = port
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._handlers: set[asyncio.Task[object]] = set()

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        if not self._started.wait(START_TIMEOUT):
            raise RuntimeError("fault proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(START_TIMEOUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT)
        self._loop.close()

    def kubeconfig(self, path: Path) -> Path:
        config = kubeconfig(f"http://127.0.0.1:{self.port}", self.plane.ca_file, "", "proxy")
        cluster = config["clusters"][0]["cluster"]
        cluster.pop("certificate-authority", None)
        config["users"][0]["user"] = {}
        path.write_text(json.dumps(config))
        return path

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._started.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        context = ssl.create_default_context(cafile=str(self.plane.ca_file))
        # No total timeout: watches stay open for minutes.
        self._session = ClientSession(
            connector=TCPConnector(ssl=context), timeout=ClientTimeout(total=None)
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        # Open watch streams never end on their own: cancel their handlers, then close.
        for task in list(self._handlers):
            task.cancel()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _inject(self, request: web.Request) -> Rule | None:
        content_type = request.headers.get("Content-Type", "")
        path = request.path_qs if "watch=" in request.query_string else request.path
        with self._lock:
            for rule in self.rules:
                if len(rule.hits) < rule.times and rule.match(request.method, path, content_type):
                    rule.hits.append(path)
                    return rule
        return None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            return await self._answer(request)
        finally:
            self._handlers.discard(task)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        rule = self._inject(request)
        if rule is not None:
            with self._lock:
                self.seen.append(Seen(request.method, request.path, rule.status, True))
            body = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": f"injected by the test proxy: {rule.status}",
                "reason": REASONS.get(rule.status, "InternalError"),
                "code": rule.status,
            }
            if rule.omit_reason:
                del body["reason"]
            if rule.as_watch_event:
                event = json.dumps({"type": "ERROR", "object": body}) + "\n"
                return web.Response(text=event, content_type="application/json")
            return web.json_response(body, status=rule.status)
        assert self._session is not None
        hop = ("host", "connection", "transfer-encoding", "content-length", "accept-encoding")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in hop}
        headers["Authorization"] = f"Bearer {self.plane.admin_token}"
        async with self._session.request(
            request.method,
            self.plane.server + request.path_qs,
            headers=headers,
            data=await request.read(),
        ) as upstream:
            with self._lock:
                self.seen.append(Seen(request.method, request.path, upstream.status, False))
            response = web.StreamResponse(status=upstream.status)
            for key in ("Content-Type",):
                if key in upstream.headers:
                    response.headers[key] = upstream.headers[key]
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ClientError, ConnectionError):
                pass  # a watch cut by either side, as when the proxy stops
            return response
