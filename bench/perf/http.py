"""A minimal HTTP/1.1 keep-alive client: the load generator must not be what is measured
(httpx's async pool managed about 60 requests/s with 32 connections on this machine)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlparse


class Connection:
    """One keep-alive connection that sends JSON and reads a Content-Length answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, base_url: str) -> Connection:
        url = urlparse(base_url)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        return cls(reader, writer, url.netloc)

    async def post(
        self, path: str, body: bytes, *, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line, _, rest = (await self.reader.readuntil(b"\r\n\r\n")).partition(b"\r\n")
        fields = dict(line.split(b":", 1) for line in rest.strip().split(b"\r\n") if b":" in line)
        length = {k.strip().lower(): v.strip() for k, v in fields.items()}[b"content-length"]
        payload = await self.reader.readexactly(int(length))
        return int(status_line.split()[1]), json.loads(payload)

    def close(self) -> None:
        self.writer.close()
