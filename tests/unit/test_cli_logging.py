"""The services' logging: JSON lines or text, job ids on every line about a job, quiet libraries."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from anchorline.cli import logs
from anchorline.cli.main import main
from anchorline.settings import Settings
from anchorline.stream.kafka import client_config, consumer_config, producer_config


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    names = (*logs.CHATTY, logs.KAFKA_LOGGER, "uvicorn.error")
    levels = {name: logging.getLogger(name).level for name in names}
    filters = logging.getLogger("uvicorn.error").filters[:]
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)
    logging.getLogger("uvicorn.error").filters[:] = filters


def test_json_lines_carry_the_service_and_the_job(restore_logging: None) -> None:
    out = io.StringIO()
    logs.configure(level="INFO", fmt="json", service="verifier", stream=out)
    logging.getLogger("anchorline.stream.runner").warning(
        "dead-lettering %s", "t[0]@1", extra={"job_id": "job-1"}
    )
    line = json.loads(out.getvalue())
    assert line["msg"] == "dead-lettering t[0]@1"
    assert (line["service"], line["job_id"], line["level"]) == ("verifier", "job-1", "warning")


def test_text_lines_end_with_the_job(restore_logging: None) -> None:
    out = io.StringIO()
    logs.configure(level="INFO", fmt="text", stream=out)
    logging.getLogger("x").info("retrying", extra={"job_ids": ["a", "b"]})
    assert out.getvalue().rstrip().endswith("x: retrying [job_ids=a,b]")


def test_per_request_and_migration_lines_are_not_logged_at_info(restore_logging: None) -> None:
    logs.configure(level="INFO", fmt="json", stream=io.StringIO())
    for name in ("httpx", "alembic", "web3", "uvicorn.access"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
    startup = logging.getLogger("uvicorn.error")
    record = startup.makeRecord("uvicorn.error", logging.INFO, "", 0, "Started server", (), None)
    assert not startup.filter(record)
    running = startup.makeRecord("uvicorn.error", logging.INFO, "", 0, "Uvicorn running", (), None)
    assert startup.filter(running)


def test_at_debug_everything_is_logged(restore_logging: None) -> None:
    logs.configure(level="DEBUG", fmt="text", stream=io.StringIO())
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
    assert logging.getLogger(logs.KAFKA_LOGGER).isEnabledFor(logging.DEBUG)


def test_every_kafka_client_logs_through_python_logging() -> None:
    settings = Settings()
    for config in (
        client_config(settings),
        producer_config(settings),
        consumer_config(settings, group_id="g"),
    ):
        assert config["logger"] is logging.getLogger(logs.KAFKA_LOGGER)


def test_an_unknown_log_format_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "verifier", "--log-format", "xml"])
    assert "invalid choice: 'xml'" in capsys.readouterr().err
