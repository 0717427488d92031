"""The relayed stream's HTTP response: Starlette's ``StreamingResponse`` made cheaper per stream.

Two costs of the stock class showed in bench/gateway's profile of streams:

* the end of the response went out as a write of its own after the last chunk; a chunk the
  relay marks :class:`Last` goes out with the end, in one write;
* watching for the client going away took an anyio task group and cancel scopes per stream
  (~7% of a stream's CPU). The same watch is done here with asyncio alone: a task waits for
  ``http.disconnect`` and cancels the streaming task, so the relay's generator is cancelled at
  its await, as before, and bills what was sent.
"""

from __future__ import annotations

import asyncio

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class Last(bytes):
    """The stream's final bytes: nothing follows them, so they end the response."""


class RelayResponse(StreamingResponse):
    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        ended = False
        async for chunk in self.body_iterator:
            assert isinstance(chunk, bytes)
            ended = isinstance(chunk, Last)
            await send({"type": "http.response.body", "body": bytes(chunk), "more_body": not ended})
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        spec_version = scope.get("asgi", {}).get("spec_version", "2.0")
        if scope["type"] != "http" or self.background is not None or spec_version != "2.3":
            # Anything but the server the gateway runs under (uvicorn, ASGI 2.3): as Starlette does.
            await super().__call__(scope, receive, send)
            return
        host = asyncio.current_task()
        assert host is not None
        streaming = True
        cancelled_for_disconnect = False

        def on_disconnect(listener: asyncio.Task[None]) -> None:
            nonlocal cancelled_for_disconnect
            if streaming and not listener.cancelled() and listener.exception() is None:
                cancelled_for_disconnect = True
                host.cancel()

        listener = asyncio.ensure_future(self.listen_for_disconnect(receive))
        listener.add_done_callback(on_disconnect)
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            # Cancelled for the disconnect alone: the response is over, as with Starlette's
            # task group. Any other cancellation goes on.
            if not cancelled_for_disconnect or host.uncancel() > 0:
                raise
        finally:
            streaming = False
            listener.cancel()
