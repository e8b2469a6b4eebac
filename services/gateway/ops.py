"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import KafkaException
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from anchorline_gateway.auth import tenant_of

DASHBOARD = Path(__file__).with_name("dashboard.html")


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
    if not await run_in_threadpool(gateway.publisher.healthy):
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


async def pipeline(request: Request) -> Response:
    """Each stage's lag, retries waiting and dead letters, read from Kafka."""
    view = request.app.state.gateway.pipeline
    if view is None:
        return JSONResponse({"error": "no pipeline view configured"}, status_code=404)
    try:
        return JSONResponse(await run_in_threadpool(view.snapshot))
    except KafkaException as exc:
        return JSONResponse({"error": f"Kafka: {exc}"}, status_code=503)


async def dashboard(request: Request) -> Response:
    return HTMLResponse(DASHBOARD.read_text())
