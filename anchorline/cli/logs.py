"""How the `anchorline` command logs: JSON lines for services, text for people, quiet libraries."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

FORMATS = ("json", "text")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What a log record may carry about a job (logger.warning(..., extra={"job_id": ...})).
JOB_FIELDS = ("job_id", "job_ids")
# Libraries that log a line per request or per migration step at INFO: shown only at DEBUG.
CHATTY = ("httpx", "httpcore", "urllib3", "web3", "alembic", "uvicorn.access")
KAFKA_LOGGER = "librdkafka"


class JsonLines(logging.Formatter):
    """One JSON object a line: ts, level, service, logger, msg, the job it is about, exc."""

    def __init__(self, *, service: str | None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in JOB_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps({k: v for k, v in line.items() if v is not None}, default=str)


class Text(logging.Formatter):
    """TEXT, and the job a line is about at its end."""

    def __init__(self) -> None:
        super().__init__(TEXT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for name in JOB_FIELDS:
            if getattr(record, name, None):
                value = getattr(record, name)
                line += f" [{name}={','.join(value) if isinstance(value, list) else value}]"
        return line


class UvicornStartup(logging.Filter):
    """Of uvicorn's startup lines, only where it listens (the rest say nothing to a user)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.getMessage().startswith(
            "Uvicorn running"
        )


def configure(
    *,
    level: str,
    fmt: str,
    service: str | None = None,
    kafka_level: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Log to stderr in `fmt` at `level`. librdkafka's own lines (its clients are configured
    with the `librdkafka` logger) show at `kafka_level`, else at `level`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLines(service=service) if fmt == "json" else Text())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    debugging = root.level <= logging.DEBUG
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET if debugging else logging.WARNING)
    logging.getLogger(KAFKA_LOGGER).setLevel((kafka_level or level).upper())
    startup = logging.getLogger("uvicorn.error")
    for old in [f for f in startup.filters if isinstance(f, UvicornStartup)]:
        startup.removeFilter(old)
    if not debugging:
        startup.addFilter(UvicornStartup())
