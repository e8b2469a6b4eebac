"""Webhook callback URLs: their syntax (checked where a job enters) and the addresses they may
reach (checked again each time the notifier calls one, after resolving its name)."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from urllib.parse import SplitResult, urlsplit

from anchorline.errors import BadInput, Retryable

MAX_URL = 2048
SCHEMES = ("http", "https")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_PRINTABLE = re.compile(r"[\x21-\x7e]+")  # no spaces, controls or non-ASCII: send IDNs as punycode


def check_url(url: object) -> str:
    """The URL, if it is an absolute http(s) URL with a host and no credentials; else BadInput."""
    if not isinstance(url, str) or not 1 <= len(url) <= MAX_URL or not _PRINTABLE.fullmatch(url):
        raise BadInput(f"callback_url must be 1 to {MAX_URL} printable ASCII characters")
    parts = _split(url)
    if parts.scheme not in SCHEMES:
        raise BadInput("callback_url must be an http or https URL")
    if not parts.hostname:
        raise BadInput("callback_url must name a host")
    if parts.username is not None or parts.password is not None:
        raise BadInput("callback_url must not carry credentials")
    if parts.fragment:
        raise BadInput("callback_url must not have a fragment")
    return url


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise BadInput(f"callback_url is not a URL: {exc}") from exc
    return parts


def literal_address(url: str) -> IPAddress | None:
    """The host of a checked URL if it is an IP address, else None."""
    try:
        return ipaddress.ip_address(urlsplit(url).hostname or "")
    except ValueError:
        return None


def networks(text: str) -> tuple[Network, ...]:
    """Networks from `cidr,cidr` (ValueError for a malformed one)."""
    return tuple(ipaddress.ip_network(p.strip()) for p in text.split(",") if p.strip())


def check_address(address: IPAddress, *, allowed: Sequence[Network] = ()) -> None:
    """BadInput unless the address is public, or in a network an operator allows."""
    if any(address in network for network in allowed):
        return
    if not address.is_global or address.is_multicast:
        raise BadInput(
            f"callback address {address} is not public (loopback, private, link-local or "
            "reserved): refused unless ANCHORLINE_WEBHOOK_PRIVATE_NETWORKS allows it"
        )


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host resolves to (a Retryable failure if it does not resolve now)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Retryable(f"cannot resolve {host}: {exc}") from exc
    return [ipaddress.ip_address(info[4][0]) for info in infos]
