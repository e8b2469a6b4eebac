"""The services' logging: no line per request from the HTTP client."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from anchorline.cli.main import quiet_per_request_loggers


@pytest.fixture
def restore_levels() -> Iterator[None]:
    root, httpx = logging.getLogger(), logging.getLogger("httpx")
    levels = root.level, httpx.level
    yield
    root.setLevel(levels[0])
    httpx.setLevel(levels[1])


def test_httpx_request_lines_are_not_logged_at_info(restore_levels: None) -> None:
    logging.getLogger().setLevel(logging.INFO)
    quiet_per_request_loggers()
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)


def test_at_debug_httpx_logs_everything(restore_levels: None) -> None:
    logging.getLogger().setLevel(logging.DEBUG)
    logging.getLogger("httpx").setLevel(logging.NOTSET)
    quiet_per_request_loggers()
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
