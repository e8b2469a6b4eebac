"""The gateway's HTTP parser bounds a request's head, on a real uvicorn server and sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from anchorline.infra.ports import free_port
from anchorline_gateway.http11 import MAX_HEAD_BYTES, BoundedHttpTools


async def echo(request: Request) -> PlainTextResponse:
    body = await request.body()
    return PlainTextResponse(f"{len(request.headers.get('x-filler', ''))} {len(body)}")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    app = Starlette(routes=[Route("/", echo, methods=["GET", "POST"])])
    chosen = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=chosen, http=BoundedHttpTools, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield chosen
    server.should_exit = True
    thread.join(10)


def head(filler: int, *, method: str = "GET", body: bytes = b"") -> bytes:
    return (
        f"{method} / HTTP/1.1\r\nHost: t\r\nX-Filler: {'a' * filler}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def answer(connection: socket.socket) -> tuple[int, bytes]:
    """One response: its status and body (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("closed before an answer")
        data += chunk
    top, _, rest = data.partition(b"\r\n\r\n")
    fields = dict(line.split(b": ", 1) for line in top.split(b"\r\n")[1:])
    length = int(fields[b"content-length"])
    while len(rest) < length:
        rest += connection.recv(65536)
    return int(top.split()[1]), rest[:length]


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_a_head_within_the_bound_is_served_and_the_count_starts_again_each_request(
    port: int,
) -> None:
    with connect(port) as connection:
        for _ in range(3):  # three heads of 10 KiB on one connection: 30 KiB in all, each served
            connection.sendall(head(10 * 1024))
            assert answer(connection) == (200, f"{10 * 1024} 0".encode())


def test_a_body_read_with_its_head_does_not_count_against_the_bound(port: int) -> None:
    body = b"b" * (1 << 20)
    with connect(port) as connection:
        connection.sendall(head(100, method="POST", body=body))  # often one read: head and body
        assert answer(connection) == (200, f"100 {len(body)}".encode())


def test_a_head_past_the_bound_is_refused_and_its_connection_closed(port: int) -> None:
    with connect(port) as connection:
        connection.sendall(head(MAX_HEAD_BYTES + 1024)[: MAX_HEAD_BYTES + 512])
        status, reason = answer(connection)
        assert status == 431
        assert b"16 KiB" in reason
        assert connection.recv(1) == b""  # closed


def test_a_header_of_megabytes_is_cut_off_long_before_its_end(port: int) -> None:
    """The unbounded case httptools alone has (a 20 MB header taken whole): the server closes
    the connection while the client still sends, and serves the next one."""
    sent = 0
    with connect(port) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Filler: ")
        with pytest.raises(OSError):  # broken pipe, or reset, once the server closed
            while sent < 20 << 20:
                connection.sendall(b"a" * 65536)
                sent += 65536
    assert sent < 4 << 20
    with connect(port) as connection:
        connection.sendall(head(10))
        assert answer(connection) == (200, b"10 0")
