"""API keys: each key belongs to one tenant, and a tenant sees only its own jobs.

With no keys configured (a local run) the API is open and tenant-blind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/", "/healthz", "/readyz"})  # "/" is the static dashboard page


def tenant_of(request: Request) -> str | None:
    """The tenant of the request's API key; None when the API is open."""
    tenant: str | None = request.scope.get("state", {}).get("tenant")
    return tenant


def visible(request: Request, job: Mapping[str, Any]) -> bool:
    tenant = tenant_of(request)
    return tenant is None or job.get("tenant") == tenant


def presented_key(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.headers.get("x-api-key")


class ApiKeys:
    """ASGI middleware: a known key on every request but health checks, its tenant in the scope."""

    def __init__(self, app: ASGIApp, *, keys: Mapping[str, str]) -> None:
        self.app = app
        self.keys = dict(keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        key = presented_key(Request(scope))
        tenant = self.keys.get(key) if key else None
        if tenant is None:
            reason = "unknown API key" if key else "an API key is required (Authorization: Bearer)"
            response = JSONResponse(
                {"error": reason}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["tenant"] = tenant
        await self.app(scope, receive, send)
