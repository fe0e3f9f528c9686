"""The sidecar's ASGI app: its routes (its own endpoints, then the upstreams) and its lifespan.

Every route the sidecar answers is listed in `build_app`: the sidecar's own endpoints in
``OWN_ROUTES`` (served under ``/_retry_transport/``), then one route per upstream prefix, then
a 404 for paths no upstream serves. A request is screened first (`screening.Screen`'s
check); one for an upstream then goes straight to its forwarder (`SidecarApp`: the paths of
the sidecar's own endpoints and those of the upstreams never overlap), everything else through
Starlette's router, which also runs the lifespan (and would reach the same forwarders).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

from .._limiter import SharedLimiter
from .forwarding import Forwarder
from .metrics import Metrics
from .screening import Screen
from .settings import OWN_PREFIX, ProxySettings, UpstreamSpec

__all__ = ["SidecarApp", "build_app"]

Endpoint = Callable[[Request], Awaitable[Response]]


def _serves(prefix: str | None, path: str) -> bool:
    """Whether the upstream mounted at ``prefix`` (``/<name>``, or None at the root) serves
    ``path``: ``/<name>`` and ``/<name>/...``, or at the root everything but our own paths."""
    if prefix:
        return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")
    return path != OWN_PREFIX and not path.startswith(OWN_PREFIX + "/")


class _UpstreamRoute(BaseRoute):
    """Routes ``/<name>`` and ``/<name>/...`` (everything but our own paths at the root)."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder
        self.prefix = forwarder.spec.name and f"/{forwarder.spec.name}"

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        return (Match.FULL if _serves(self.prefix, scope["path"]) else Match.NONE), {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.forwarder(scope, receive, send)


class _Unrouted(BaseRoute):
    """Answers any path no upstream serves with a 404 naming the prefixes that exist."""

    def __init__(self, prefixes: Sequence[str]) -> None:
        self._prefixes = list(prefixes)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return (Match.FULL if scope["type"] == "http" else Match.NONE), {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {
                "type": "error",
                "error": {
                    "type": "not_found",
                    "message": "retry_transport proxy: no upstream is served under this path; "
                    f"prefixes: {', '.join(self._prefixes)}",
                },
            },
            status_code=404,
            headers={"x-should-retry": "false"},
        )
        await response(scope, receive, send)


class _Endpoints:
    """The sidecar's own endpoints (``GET /_retry_transport/<name>``)."""

    def __init__(self, forwarders: Sequence[Forwarder], metrics: Metrics) -> None:
        self._forwarders = forwarders
        self._metrics = metrics

    async def healthz(self, request: Request) -> Response:
        """Each upstream's URL and the shared block left on it, in seconds, as its limiter's
        store knows it (for Redis: the fleet's block, learnt by one bounded read)."""
        upstreams = {}
        for forwarder in self._forwarders:
            limiter = forwarder.limiter
            blocked_for = 0.0
            if limiter is not None:
                await limiter.gate()  # asks the store, as a request about to be sent would
                blocked_for = round(limiter.blocked_for(), 3)
            upstreams[forwarder.label] = {"url": forwarder.spec.url, "blocked_for": blocked_for}
        return JSONResponse({"status": "ok", "upstreams": upstreams})

    async def metrics(self, request: Request) -> Response:
        """The counters in Prometheus text format (a 404 without prometheus-client)."""
        rendered = self._metrics.render()
        if rendered is None:
            return PlainTextResponse(
                "metrics need prometheus-client: pip install prometheus-client\n", 404
            )
        body, content_type = rendered
        return Response(body, media_type=content_type)

    def routes(self) -> dict[str, Endpoint]:
        """Each endpoint by its path segment under ``/_retry_transport/``."""
        return {"healthz": self.healthz, "metrics": self.metrics}


class SidecarApp:
    """The sidecar's ASGI app: screens each request, hands one for an upstream straight to its
    forwarder and everything else (its own endpoints, the 404, the lifespan) to ``router``."""

    def __init__(self, router: Starlette, upstreams: Sequence[_UpstreamRoute], via_token: bytes):
        self.router = router
        self._upstreams = tuple((route.prefix, route.forwarder) for route in upstreams)
        self._screen = Screen(router, via_token=via_token)

    @property
    def routes(self) -> list[BaseRoute]:
        """Every route, in the order they are tried."""
        return self.router.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The screen's check and the dispatch in this one frame: each await of a coroutine
        # is a frame that every resumption of the request's task passes through.
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        refusal = self._screen.refusal(scope)
        if refusal is not None:
            await self._screen.refuse(scope, send, refusal)
            return
        path: str = scope["path"]
        for prefix, forwarder in self._upstreams:
            if _serves(prefix, path):
                await forwarder(scope, receive, send)
                return
        await self.router(scope, receive, send)


def build_app(settings: ProxySettings) -> SidecarApp:
    """The sidecar's ASGI app. Transports and limiters are made by its lifespan (startup)."""
    metrics = Metrics(spec.label for spec in settings.upstreams)
    # This sidecar's name in Via headers: its own, so that a loop through it is seen.
    via_token = f"retry-transport-{secrets.token_hex(4)}".encode()
    forwarders = [
        Forwarder(spec, settings, metrics.upstream(spec.label), via_token)
        for spec in settings.upstreams
    ]
    own_routes = _Endpoints(forwarders, metrics).routes()
    names = {spec.name for spec in settings.upstreams}
    own: list[BaseRoute] = [
        Route(f"{OWN_PREFIX}/{path}", endpoint, methods=["GET"])
        for path, endpoint in own_routes.items()
    ]
    for path, endpoint in own_routes.items():
        # The short paths only when no upstream could be asked for them.
        if None not in names and path not in names:
            own.append(Route(f"/{path}", endpoint, methods=["GET"]))
    # Named upstreams first: the root upstream takes everything else.
    ordered = sorted(forwarders, key=lambda forwarder: forwarder.spec.name is None)
    upstream_routes = [_UpstreamRoute(forwarder) for forwarder in ordered]
    routes: list[BaseRoute] = [*own, *upstream_routes]
    if None not in names:
        routes.append(_Unrouted([f"/{spec.name}/" for spec in settings.upstreams]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            redis_client: Any = None
            if settings.redis_url is not None:
                import redis.asyncio

                extra = (
                    {} if settings.redis_password is None else {"password": settings.redis_password}
                )
                redis_client = redis.asyncio.from_url(settings.redis_url, **extra)
                stack.push_async_callback(redis_client.aclose)
            for forwarder in forwarders:
                limiter = _limiter(settings, forwarder.spec, redis_client)
                transport = forwarder.start(limiter)
                stack.push_async_callback(transport.aclose)
                metrics.watch_block(forwarder.label, limiter.blocked_for)
                metrics.watch_headroom(forwarder.label, limiter)
            yield

    return SidecarApp(Starlette(routes=routes, lifespan=lifespan), upstream_routes, via_token)


def _limiter(settings: ProxySettings, spec: UpstreamSpec, redis_client: Any) -> SharedLimiter:
    if redis_client is None:
        return SharedLimiter(settings.budget, settings.max_concurrency)
    from ..redis import RedisLimiter

    return RedisLimiter(
        redis_client,
        name=spec.limiter_name,
        budget=settings.budget,
        max_concurrency=settings.max_concurrency,
        timeout=settings.redis_timeout,
    )
