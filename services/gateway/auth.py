"""API keys: each key belongs to one tenant, and a tenant sees only its own jobs and blobs.

Admin keys belong to the operators: they alone read the global views (the pipeline's topics,
metrics over every tenant), and they see every tenant's jobs. With no keys of either kind
configured (a local run) the API is open and tenant-blind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from anchorline.errors import BadInput
from anchorline.proof.trust import WELL_KNOWN_PATH
from anchorline.tenants import check_tenant
from anchorline_gateway.problems import BadRequest

OPEN_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/openapi.json", WELL_KNOWN_PATH}
)  # "/": the static page
OPERATOR_PATHS = frozenset({"/v1/pipeline", "/metrics"})
OPERATOR_PREFIXES = ("/v1/dead-letters",)  # the dead-letter desk: browse, replay


def tenant_of(request: Request) -> str | None:
    """The tenant of the request's API key; None when the API is open or the key an admin's."""
    tenant: str | None = request.scope.get("state", {}).get("tenant")
    return tenant


def visible(request: Request, job: Mapping[str, Any]) -> bool:
    tenant = tenant_of(request)
    return tenant is None or job.get("tenant") == tenant


def owner(request: Request, declared: object) -> str | None:
    """Whose request this is: the key's tenant, or where no key says, the tenant declared."""
    tenant = tenant_of(request)
    if declared is not None and declared != "":
        try:
            declared = check_tenant(declared)
        except BadInput as exc:
            raise BadRequest(str(exc)) from exc
    else:
        declared = None
    if tenant is None:
        return declared
    if declared not in (None, tenant):
        raise BadRequest(f"this API key acts for tenant {tenant!r} only", 403)
    return tenant


def presented_key(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.headers.get("x-api-key")


class ApiKeys:
    """ASGI middleware: a known key on every request but health checks, its tenant in the scope;
    an admin key on the operators' routes."""

    def __init__(
        self, app: ASGIApp, *, keys: Mapping[str, str], admin_keys: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.keys = dict(keys)
        self.admin_keys = admin_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        open_api = not self.keys and not self.admin_keys
        if scope["type"] != "http" or open_api or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        key = presented_key(Request(scope))
        if key is not None and key in self.admin_keys:
            await self.app(scope, receive, send)
            return
        tenant = self.keys.get(key) if key else None
        if tenant is None:
            reason = "unknown API key" if key else "an API key is required (Authorization: Bearer)"
            headers = {"WWW-Authenticate": "Bearer"}
            await JSONResponse({"error": reason}, 401, headers)(scope, receive, send)
            return
        if scope["path"] in OPERATOR_PATHS or scope["path"].startswith(OPERATOR_PREFIXES):
            reason = "this route is for operators: it needs an admin key"
            await JSONResponse({"error": reason}, 403)(scope, receive, send)
            return
        scope.setdefault("state", {})["tenant"] = tenant
        await self.app(scope, receive, send)
