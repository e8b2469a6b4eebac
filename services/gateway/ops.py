"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from anchorline_gateway.auth import tenant_of


async def health(request: Request) -> Response:
    """Alive: the process answers."""
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """Ready: the jobs table answers and Kafka has not been reported unreachable."""
    gateway = request.app.state.gateway
    problems = []
    try:
        await run_in_threadpool(gateway.reader.stats)
    except SQLAlchemyError as exc:
        problems.append(f"jobs database: {type(exc).__name__}")
    if not gateway.publisher.healthy():
        problems.append("kafka: every broker is down")
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    """Job counts by state and kind, in the Prometheus text format."""
    reader = request.app.state.gateway.reader
    stats = await run_in_threadpool(lambda: reader.stats(tenant=tenant_of(request)))
    lines = [
        "# HELP anchorline_jobs Jobs in the jobs table by kind and state.",
        "# TYPE anchorline_jobs gauge",
    ]
    for kind, states in sorted(stats["by_kind"].items()):
        for state, count in sorted(states.items()):
            lines.append(f'anchorline_jobs{{kind="{kind}",state="{state}"}} {count}')
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
