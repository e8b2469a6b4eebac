"""The notifier's logic: signatures, payloads, which hook and key, and which addresses."""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from anchorline.callbacks import check_address, check_url, networks
from anchorline.errors import BadInput, ConfigurationError, Permanent
from anchorline.events import JobKind, JobStatus, NotifyRequested, Stage, StageState
from anchorline.settings import Settings
from anchorline_notifier.handler import NotifyHandler, message_id, payload
from anchorline_notifier.sender import HttpSender
from anchorline_notifier.signing import signature, signed_headers

KEY = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
AT = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def test_signatures_match_the_standard_webhooks_test_vector() -> None:
    signed = signature(
        KEY,
        message_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
        body=b'{"test": 2432232314}',
    )
    assert signed == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def ended(**changes: object) -> NotifyRequested:
    values: dict[str, object] = {
        "job_id": "job-1",
        "kind": JobKind.VERIFY,
        "stage": Stage.VERIFY,
        "state": StageState.SUCCEEDED,
        "finished_at": AT,
        "record": json.dumps({"job_id": "job-1", "state": "succeeded"}),
        "generation": 2,
        "tenant": "acme",
        **changes,
    }
    return NotifyRequested(**values)  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, Mapping[str, str]]] = []

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        self.sent.append((url, body, headers))
        return 204


def handler(sender: Recorder, **urls: str) -> NotifyHandler:
    return NotifyHandler(sender, urls=urls, secrets={"acme": KEY}, clock=lambda: 1700000000.5)


def test_a_delivery_is_signed_and_recorded_as_a_notify_status() -> None:
    sender = Recorder()
    (status,) = handler(sender).handle([ended(callback_url="https://a.example/h?t=s")], print)
    ((url, body, headers),) = sender.sent
    assert url == "https://a.example/h?t=s"
    assert json.loads(body) == {
        "type": "job.succeeded",
        "timestamp": "2026-11-30T03:00:00+00:00",
        "data": {"job_id": "job-1", "state": "succeeded"},
    }
    assert headers["webhook-id"] == "msg_job-1_2" == message_id(ended())
    assert headers["webhook-timestamp"] == "1700000000"
    assert headers == signed_headers(KEY, message_id="msg_job-1_2", timestamp=1700000000, body=body)
    assert isinstance(status, JobStatus)
    assert (status.stage, status.state, status.generation) == (
        Stage.NOTIFY,
        StageState.SUCCEEDED,
        2,
    )
    assert status.note == "webhook delivered to https://a.example/h: HTTP 204"  # no query shown


def test_a_tenant_default_or_the_default_for_all_is_used_and_none_means_no_call() -> None:
    sender = Recorder()
    handler(sender, acme="https://acme.example/h").handle([ended()], print)
    handler(sender, **{"*": "https://all.example/h"}).handle([ended()], print)
    assert handler(sender).handle([ended()], print) == []
    assert [url for url, _, _ in sender.sent] == ["https://acme.example/h", "https://all.example/h"]


def test_a_tenant_without_a_secret_cannot_be_notified() -> None:
    with pytest.raises(Permanent, match="no webhook secret for tenant 'bolt'"):
        handler(Recorder(), bolt="https://b.example").handle([ended(tenant="bolt")], print)


def test_the_payload_is_the_record_under_data() -> None:
    assert json.loads(payload(ended(state=StageState.CANCELLED)))["type"] == "job.cancelled"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://a.example/h",
        "file:///etc/passwd",
        "https://",
        "https://user:pw@a.example/h",
        "https://a.example/h#frag",
        "https://a.example:99999/h",
        "https://a.example/h with space",
        "https://é.example/h",
        "x" * 3000,
        "",
        42,
    ],
)
def test_a_callback_url_outside_the_rules_is_refused_with_a_reason(url: object) -> None:
    with pytest.raises(BadInput, match="callback_url"):
        check_url(url)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.169.254",
        "::1",
        "fd00::1",
        "0.0.0.0",
        "224.0.0.1",
        "100.64.0.1",
    ],
)
def test_addresses_that_are_not_public_are_refused_unless_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    with pytest.raises(BadInput, match="not public"):
        check_address(ip)
    check_address(ip, allowed=networks(f"{address}/32" if ip.version == 4 else f"{address}/128"))


def test_a_public_address_is_allowed() -> None:
    check_address(ipaddress.ip_address("93.184.215.14"))


def test_the_sender_refuses_a_loopback_hook_before_connecting() -> None:
    sender = HttpSender(timeout_s=1)
    with pytest.raises(BadInput, match=r"127\.0\.0\.1 is not public"):
        sender.post("http://127.0.0.1:1/h", b"{}", {})
    sender.close()


def test_webhook_settings_are_parsed_and_checked() -> None:
    settings = Settings(
        webhook_urls="acme=https://a.example/h?x=1,*=https://all.example/h",
        webhook_secrets="acme=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        webhook_private_networks="127.0.0.0/8, 10.0.0.0/8",
    )
    assert settings.webhook_url_map == {
        "acme": "https://a.example/h?x=1",
        "*": "https://all.example/h",
    }
    assert settings.webhook_secret_map == {"acme": KEY}
    assert len(settings.webhook_networks) == 2
    assert "whsec" not in repr(settings)
    for broken in (
        {"webhook_urls": "acme=ftp://x"},
        {"webhook_secrets": "acme=whsec_***"},
        {"webhook_urls": "not a tenant!=https://x.example"},
        {"webhook_private_networks": "10.0.0.0/33"},
    ):
        with pytest.raises(ConfigurationError):
            Settings(**broken)  # type: ignore[arg-type]
