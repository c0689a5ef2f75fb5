"""Logging: structured lines (JSON in production, readable on a terminal), one format for all.

snip's own loggers, the standard library's and granian's all go through one structlog
formatter. Fields that could carry a secret are redacted before anything is written.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any, Literal

import structlog
from structlog.types import EventDict, Processor

LogFormat = Literal["auto", "json", "console"]
SECRET_KEYS = frozenset({"api_key", "apikey", "authorization", "password", "token", "secret",
                         "x-api-key", "cookie", "set-cookie", "metrics_token"})
REDACTED = "[redacted]"


def redact(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """Never write a key, password or token, whatever a caller passed in."""
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = REDACTED
    return event


def _shared() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]


def formatter(fmt: LogFormat = "auto") -> logging.Formatter:
    """The stdlib formatter every handler uses (also named in granian's logging config)."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Processor = (structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
                           if console else structlog.processors.JSONRenderer())
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    )


def dict_config(level: str = "info", fmt: LogFormat = "auto") -> dict[str, Any]:
    """A `logging.config.dictConfig` for snip and granian alike (granian takes it as is)."""
    handler = {"class": "logging.StreamHandler", "formatter": "snip", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"snip": {"()": "snip.entrypoints.logs.formatter", "fmt": fmt}},
        "handlers": {"console": handler, "access": handler},
        "root": {"handlers": ["console"], "level": level.upper()},
        "loggers": {
            "_granian": {"handlers": ["console"], "level": level.upper(), "propagate": False},
            "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "snip": {"level": level.upper()},
        },
    }


def configure(level: str = "info", fmt: LogFormat = "auto") -> None:
    logging.config.dictConfig(dict_config(level, fmt))
    structlog.configure(
        processors=[*_shared(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
