"""The CLI's gateway client: the API key from the environment, errors as one reason."""

from __future__ import annotations

import httpx
import pytest

from anchorline.cli.client import GatewayClient, GatewayError
from anchorline.settings import Settings


def test_the_api_key_of_the_environment_is_sent_as_a_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"job_id": "j"})

    settings = Settings.from_env(
        {"ANCHORLINE_API_KEY": "k1", "ANCHORLINE_GATEWAY_URL": "http://g/"}
    )
    client = GatewayClient(settings, transport=httpx.MockTransport(answer))
    client.get("j")
    client.close()
    assert seen[0].headers["Authorization"] == "Bearer k1"
    assert str(seen[0].url) == "http://g/v1/jobs/j"


def test_a_refusal_carries_its_status_and_the_gateways_reason() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "unknown API key"})

    client = GatewayClient(Settings(), transport=httpx.MockTransport(answer))
    with pytest.raises(GatewayError, match="401 unknown API key") as refused:
        client.list(state=None, kind=None, limit=5)
    client.close()
    assert refused.value.status == 401
