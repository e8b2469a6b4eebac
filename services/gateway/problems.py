"""How the gateway says no: a JSON body whose `error` gives the reason."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

SHOWN_CHARS = 64  # of a client's own text quoted back in a reason


def problem(status: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": detail}, status_code=status, headers=headers or None)


class BadRequest(HTTPException):
    """A request the gateway refuses; answered as `problem(status_code, detail)`."""

    def __init__(self, detail: str, status_code: int = 400) -> None:
        super().__init__(status_code=status_code, detail=detail)


def quoted(text: str) -> str:
    """A client's text, cut short and repr'd, fit to quote in a reason."""
    cut = text[:SHOWN_CHARS]
    return repr(cut) + ("…" if len(text) > SHOWN_CHARS else "")
