"""The gateway's HTTP API as the `anchorline` command uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from anchorline.errors import AnchorlineError
from anchorline.settings import Settings

TIMEOUT_S = 30.0


class GatewayError(AnchorlineError):
    """The gateway could not be reached, or refused the request (its reason in the message)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GatewayClient:
    """Submit, read and list jobs, with the API key of ANCHORLINE_API_KEY when one is set."""

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None) -> None:
        auth = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self.base_url = settings.gateway
        self.http = httpx.Client(
            base_url=self.base_url, headers=auth, timeout=TIMEOUT_S, transport=transport
        )

    def submit(
        self,
        content: Path,
        *,
        manifest: str,
        signature: str,
        kind: str,
        scheme: str,
        priority: str | None = None,
    ) -> dict[str, Any]:
        fields = {"kind": kind, "manifest": manifest, "signature": signature}
        fields["signature_scheme"] = scheme
        if priority:  # none: the gateway's default for the tenant
            fields["priority"] = priority
        with content.open("rb") as data:
            files = {"content": (content.name, data, "application/octet-stream")}
            return self._call("POST", "/v1/jobs", data=fields, files=files)

    def get(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def list(self, *, state: str | None, kind: str | None, limit: int) -> dict[str, Any]:
        query = {"state": state, "kind": kind, "limit": str(limit)}
        return self._call("GET", "/v1/jobs", params={k: v for k, v in query.items() if v})

    def call(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        """Any route: its JSON answer, or GatewayError with the gateway's reason."""
        return self._call(method, path, **options)

    def _call(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, path, **options)
        except httpx.TransportError as exc:
            raise GatewayError(f"cannot reach the gateway at {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise GatewayError(
                f"{method} {path}: {response.status_code} {_reason(response)}",
                status=response.status_code,
            )
        body = response.json()
        return body if isinstance(body, dict) else {"body": body}

    def close(self) -> None:
        self.http.close()


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text[:200]
