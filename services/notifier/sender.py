"""POSTing a webhook: to public addresses only (or the networks an operator allows), with the
name resolved and checked once and the connection made to the address that was checked, no
redirects followed, and every network step bounded."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from anchorline.callbacks import IPAddress, Network, check_address, check_url, resolve
from anchorline.errors import Permanent, Retryable

GONE = 410  # the receiver says the hook is gone for good: trying again would not help


class Sender(Protocol):
    """Delivers one webhook; returns the receiver's 2xx status, else raises Retryable (try
    later) or Permanent (never will work)."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int: ...


class HttpSender:
    def __init__(self, *, timeout_s: float, allowed: Sequence[Network] = ()) -> None:
        self.allowed = tuple(allowed)
        self.client = httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        parts = urlsplit(check_url(url))
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = self._checked(host, port)
        pinned = urlunsplit(parts._replace(netloc=_netloc(address, parts.port)))
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        sent = {**headers, "host": parts.netloc}
        try:
            with self.client.stream(
                "POST", pinned, content=body, headers=sent, extensions=extensions
            ) as answer:
                status = answer.status_code
        except httpx.HTTPError as exc:
            raise Retryable(f"webhook to {shown(url)} not delivered: {exc!r}") from exc
        if 200 <= status < 300:
            return status
        if status == GONE:
            raise Permanent(f"webhook receiver {shown(url)} answered {status} (gone)")
        raise Retryable(f"webhook receiver {shown(url)} answered HTTP {status}")

    def _checked(self, host: str, port: int) -> IPAddress:
        """The first address of the host, once every address it has is allowed (a name that
        also resolves to a private address is refused whole)."""
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = resolve(host, port)
        for address in addresses:
            check_address(address, allowed=self.allowed)
        return addresses[0]

    def close(self) -> None:
        self.client.close()


def _netloc(address: IPAddress, port: int | None) -> str:
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"{shown}:{port}" if port else shown


def shown(url: str) -> str:
    """The URL without its query, which may carry a token."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment=""))
