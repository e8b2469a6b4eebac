"""Schemathesis on the gateway's own OpenAPI document, against the real broker and PostgreSQL:
whatever it sends, with an open API or with API keys, no answer is a 5xx and the gateway
lives on.

ANCHORLINE_FUZZ_EXAMPLES sets how many requests per operation (default 100: about a minute or
two); raise it for a longer local run.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
from eth_account import Account
from live_gateway import live_gateway
from schemathesis import GenerationMode

from anchorline.infra.kafka import KafkaBroker
from anchorline.infra.postgres import PostgresServer
from anchorline.proof.manifest import sign_eip191
from anchorline.settings import Settings
from anchorline.stream.kafka import ensure_topics
from anchorline_gateway.openapi import DOCUMENT

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("ANCHORLINE_FUZZ_EXAMPLES", "100"))


TENANT_KEY = {"Authorization": "Bearer fuzz-tenant-key"}


@dataclass(frozen=True)
class Target:
    """A running gateway and the headers each request carries."""

    url: str
    headers: dict[str, str]


@pytest.fixture(scope="module", params=["open", "with-keys"])
def target(
    request: pytest.FixtureRequest,
    kafka: KafkaBroker,
    postgres: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Target]:
    """The gateway with an open API, and with API keys (requests sent with a tenant's key)."""
    keyed = request.param == "with-keys"
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("fuzz"),
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=f"fuzz{uuid.uuid4().hex[:8]}",
        partitions=1,
        database_url=postgres.new_database("fuzz"),
        api_keys="fuzz-tenant-key:acme" if keyed else "",
        admin_keys="fuzz-admin-key" if keyed else "",
    )
    ensure_topics(settings)
    with live_gateway(settings) as url:
        yield Target(url, TENANT_KEY if keyed else {})


# The document as the gateway serves it (test_gateway_openapi holds it to the routes); loaded
# here, not from the server, so that the operations are known when pytest collects.
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=EXAMPLES,
    database="none",
)


@schema.parametrize()
def test_no_request_gets_a_server_error(case: schemathesis.Case, target: Target) -> None:
    response = case.call(base_url=target.url, headers=target.headers, timeout=30)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} → {response.status_code}: {response.text[:500]}"
    )


def test_the_gateway_lives_on_and_still_takes_a_good_job(target: Target) -> None:
    assert httpx.get(f"{target.url}/healthz", timeout=10).status_code == 200
    content = b"still accepted after the fuzzing"
    account = Account.create()
    document = {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": account.address,
    }
    response = httpx.post(
        f"{target.url}/v1/jobs",
        headers=target.headers,
        data={
            "kind": "verify",
            "manifest": json.dumps(document),
            "signature": sign_eip191(document, "0x" + bytes(account.key).hex()),
        },
        files={"content": ("c.bin", content)},
        timeout=30,
    )
    assert response.status_code == 202, response.text
