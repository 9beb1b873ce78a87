"""After a write the app accepted, the control loop ticks at once (`ControlLoop.wake`).

Without it a revoked key, a shared model or a new spec waits out the rest of the loop's
interval before the tick that acts on it. Only a write (not GET, HEAD or OPTIONS) that
was answered below 400 wakes it: a refused request changed nothing. The UI's forms are
routes of the same app, so they wake it too.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

READS = frozenset({"GET", "HEAD", "OPTIONS"})


class WakeOnWrite:
    def __init__(self, app: ASGIApp, wake: Callable[[], None]) -> None:
        self.app = app
        self.wake = wake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READS:
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                self.wake()  # the route has returned: what it wrote is committed
            await send(message)

        await self.app(scope, receive, sending)
