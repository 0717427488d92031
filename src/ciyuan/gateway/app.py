"""The ASGI application: routes, error rendering, header limits, and the sweeper's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ciyuan.admin.auth import NO_ADMIN, AdminConfig
from ciyuan.admin.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ciyuan.admin.site import admin_routes
from ciyuan.errors import CiyuanError, InvalidRequest, NotFound
from ciyuan.gateway import apis, self_service
from ciyuan.gateway.admission import RateRefused
from ciyuan.gateway.apis import ApiSpec
from ciyuan.gateway.info_routes import count_tokens, list_models, receipt
from ciyuan.gateway.limits import guarded_http_protocol
from ciyuan.gateway.openapi import OPENAPI
from ciyuan.gateway.relay import handle
from ciyuan.gateway.runtime import Runtime
from ciyuan.gateway.wire_errors import error_for_path

log = logging.getLogger("ciyuan.gateway")


def _render(request: Request, error: CiyuanError) -> Response:
    # A rate-limit refusal carries OpenAI's x-ratelimit-* and retry-after headers.
    headers = error.headers if isinstance(error, RateRefused) else None
    return error_for_path(request.url.path, error, headers=headers)


async def _on_ciyuan_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CiyuanError)
    request.app.state.runtime.metrics.refused.labels(exc.code).inc()
    return _render(request, exc)


async def _on_http(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no such route) and 405 (wrong method) in the provider's error
    format too, so an SDK pointed at a wrong path raises its typed error instead of failing to
    parse a plain-text body. The status and its headers (405's ``allow``) are kept."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error: CiyuanError = NotFound(f"no route {request.method} {request.url.path}")
    else:
        error = InvalidRequest(f"{request.method} is not allowed on {request.url.path}")
    response = _render(request, error)
    response.status_code = exc.status_code
    response.headers.update(exc.headers or {})
    return response


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _render(request, CiyuanError("internal error; the request was not charged"))


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: the database answers, so metered calls can be billed."""
    runtime: Runtime = request.app.state.runtime
    try:
        await runtime.in_store(runtime.metering.store.get_account, "ciyuan:revenue")
    except CiyuanError as error:
        return JSONResponse({"status": "unavailable", "reason": error.code}, status_code=503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    """Prometheus exposition of this process's counters."""
    runtime: Runtime = request.app.state.runtime
    return Response(runtime.metrics.render(), media_type=METRICS_CONTENT_TYPE)


async def client_openapi(request: Request) -> Response:
    """The OpenAPI document of the ``/v1`` API: public, it holds no secret."""
    return Response(orjson.dumps(OPENAPI), media_type="application/json")


Endpoint = Callable[[Request], Awaitable[Response]]
METERED: Final = {
    "/v1/chat/completions": apis.CHAT,
    "/v1/completions": apis.COMPLETIONS,
    "/v1/embeddings": apis.EMBEDDINGS,
    "/v1/responses": apis.RESPONSES,
    "/v1/messages": apis.ANTHROPIC_MESSAGES,
}


def _metered(spec: ApiSpec) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return await handle(request, spec)

    endpoint.__name__ = f"metered_{spec.name}"
    return endpoint


class HeaderLimit:
    """Refuse requests whose headers are larger than the limit, before any work is done."""

    def __init__(self, app: ASGIApp, header_bytes_max: int) -> None:
        self.app = app
        self.header_bytes_max = header_bytes_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # The request target counts too: a megabyte of query string is a header-sized
            # attack, not a request to route.
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) for name, value in scope["headers"])
            if size > self.header_bytes_max:
                error = InvalidRequest(
                    f"request headers exceed the limit of {self.header_bytes_max} bytes"
                )
                response = error_for_path(scope["path"], error)
                response.status_code = 431
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class MeteredFastPath:
    """POSTs to the metered routes go straight to their endpoint, past Starlette's router and
    exception middleware (about 7% of a plain request's CPU in py-spy profiles): the same
    handler and the same error rendering. Every other request, and any app mounted under a
    root path, takes the router."""

    def __init__(self, app: ASGIApp, endpoints: dict[str, Endpoint]) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                request = Request(scope, receive, send)
                try:
                    response = await endpoint(request)
                except CiyuanError as error:
                    response = await _on_ciyuan_error(request, error)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _sweep_forever(runtime: Runtime) -> None:
    while True:
        await asyncio.sleep(runtime.sweep_interval_s)
        try:
            expired = await runtime.in_store(runtime.metering.sweep)
            if expired:
                log.info("voided %d overdue reservations", expired)
        except CiyuanError as error:
            log.warning("reservation sweep failed: %s", error.message)


def create_app(runtime: Runtime, admin: AdminConfig | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.client.start()
        sweeper = asyncio.create_task(_sweep_forever(runtime))
        services = runtime.start_services()
        try:
            yield
        finally:
            sweeper.cancel()
            for service in services:
                service.cancel()
            if runtime.background:
                await asyncio.wait(set(runtime.background), timeout=10)
            await runtime.client.close()
            await runtime.aclose_services()

    metered = {path: _metered(spec) for path, spec in METERED.items()}
    app = Starlette(
        routes=[
            *(Route(path, endpoint, methods=["POST"]) for path, endpoint in metered.items()),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/ciyuan/receipts/{request_id}", receipt, methods=["GET"]),
            Route("/v1/ciyuan/openapi.json", client_openapi, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            # Issue 8: a key holder's own balance and usage; the admin API and the dashboard
            # (both disabled, answering 404 with the reason, when no admin key is configured).
            *self_service.routes(),
            *admin_routes(runtime, admin or NO_ADMIN),
        ],
        exception_handlers={
            CiyuanError: _on_ciyuan_error,
            HTTPException: _on_http,
            Exception: _on_unexpected,
        },
        lifespan=lifespan,
    )
    # No 307 from /v1/chat/completions/ to the slashless path: the redirect's Location is built
    # from the client's Host header (reflected input), and an SDK would re-send the POST.
    app.router.redirect_slashes = False
    app.state.runtime = runtime
    # ciyuan serve runs uvicorn with this protocol: bounded, timed request heads.
    app.state.http_protocol = guarded_http_protocol(runtime.limits)
    app.add_middleware(MeteredFastPath, endpoints=metered)
    app.add_middleware(HeaderLimit, header_bytes_max=runtime.limits.header_bytes_max)
    return app
