"""`GET /.well-known/anchorline-trust.json`: the installation's trust roots, for receipt checkers.

The document is a file the operator (or `anchorline up`) writes; it is read on each request, so
a key rotation shows without a restart, and served only once it parses as a trust document.
"""

from __future__ import annotations

from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from anchorline.errors import BadInput
from anchorline.proof.trust import MAX_BYTES, parse_trust

CACHE_S = 60


def read_trust(path: Path) -> dict[str, object]:
    """The trust document at `path`, checked and in its normal form; OSError or BadInput."""
    with path.open("rb") as handle:
        return parse_trust(handle.read(MAX_BYTES + 1)).as_json()


async def get_trust(request: Request) -> Response:
    path: Path | None = request.app.state.gateway.trust_file
    if path is None:
        return JSONResponse({"error": "this gateway publishes no trust document"}, status_code=404)
    try:
        document = await run_in_threadpool(read_trust, path)
    except FileNotFoundError:
        return JSONResponse({"error": "the trust document is not written yet"}, status_code=404)
    except (OSError, BadInput) as exc:
        return JSONResponse({"error": f"the trust document is unreadable: {exc}"}, status_code=503)
    return JSONResponse(document, headers={"Cache-Control": f"public, max-age={CACHE_S}"})
