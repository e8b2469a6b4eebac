"""A span for each HTTP request, child of the client's `traceparent` when it sends one valid
one: a missing, repeated or malformed header starts a new trace and is never an error."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from anchorline.stream.tracing import TRACEPARENT, TraceContext, Tracer, parse

_HEADER = TRACEPARENT.encode()


class TraceRequests:
    """ASGI middleware: the request's span context in `request.state.trace`."""

    def __init__(self, app: ASGIApp, *, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        span = self.tracer.start(
            f"{method} gateway",
            parent=incoming(scope),
            attributes={"http.request.method": method, "url.path": scope["path"][:256]},
            kind="server",
        )
        scope.setdefault("state", {})["trace"] = span.context
        try:
            await self.app(scope, receive, send)
        finally:
            span.end()


def incoming(scope: Scope) -> TraceContext | None:
    """The client's trace context: W3C says a request with more than one is invalid."""
    found = [value for name, value in scope.get("headers", ()) if name == _HEADER]
    return parse(found[0]) if len(found) == 1 else None


def traceparent(request: Request) -> str | None:
    """What the records a request publishes carry."""
    context = getattr(request.state, "trace", None)
    return context.traceparent if isinstance(context, TraceContext) else None
