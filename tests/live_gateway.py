"""The gateway as `anchorline run gateway` builds it, served by uvicorn in a thread, for tests
against the real broker and database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import uvicorn

from anchorline.infra.ports import free_port
from anchorline.settings import Settings
from anchorline.store.db import make_engine
from anchorline.store.migrate import upgrade
from anchorline_gateway.main import build

START_TIMEOUT_S = 30.0


@contextmanager
def live_gateway(settings: Settings) -> Iterator[str]:
    """Serve the real gateway on a free port (its database migrated first); its base URL."""
    engine = make_engine(settings.db_url)
    upgrade(engine)
    engine.dispose()
    port = free_port()
    app = build(replace(settings, http_port=port))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the gateway did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "the gateway did not stop"
        app.state.gateway.reader.engine.dispose()  # its pooled connections, closed
