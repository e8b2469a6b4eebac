"""Standard Webhooks signatures (https://www.standardwebhooks.com, spec 1.0.0): each delivery
carries `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`,
`v1,` + base64 of HMAC-SHA256 over `<id>.<timestamp>.<body>` with the tenant's key."""

from __future__ import annotations

import base64
import hashlib
import hmac


def signature(key: bytes, *, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(key: bytes, *, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, message_id=message_id, timestamp=timestamp, body=body),
    }
