"""The ASGI application: routes, error rendering, and the background sweeper's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ciyuan.errors import CiyuanError
from ciyuan.gateway.openai_routes import chat_completions, list_models
from ciyuan.gateway.runtime import Runtime
from ciyuan.gateway.wire_errors import anthropic_error, openai_error

log = logging.getLogger("ciyuan.gateway")


def _render(request: Request, error: CiyuanError) -> Response:
    if request.url.path.startswith("/v1/messages"):
        return anthropic_error(error)
    return openai_error(error)


async def _on_ciyuan_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CiyuanError)
    return _render(request, exc)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _render(request, CiyuanError("internal error; the request was not charged"))


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _sweep_forever(runtime: Runtime) -> None:
    while True:
        await asyncio.sleep(runtime.sweep_interval_s)
        try:
            expired = await runtime.in_store(runtime.metering.sweep)
            if expired:
                log.info("voided %d overdue reservations", expired)
        except CiyuanError as error:
            log.warning("reservation sweep failed: %s", error.message)


def create_app(runtime: Runtime) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.client.start()
        sweeper = asyncio.create_task(_sweep_forever(runtime))
        try:
            yield
        finally:
            sweeper.cancel()
            if runtime.background:
                await asyncio.wait(set(runtime.background), timeout=10)
            await runtime.client.close()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={CiyuanError: _on_ciyuan_error, Exception: _on_unexpected},
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
