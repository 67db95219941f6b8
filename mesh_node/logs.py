"""Logging: structlog events (stable snake_case names) rendered one way for structlog and stdlib.

Console on a terminal, JSON lines otherwise. Every line carries ISO wall time (logs are the only
place wall time appears) and `node`. Secret-looking keys are masked before rendering. Library
loggers (hypercorn, httpx, ...) go through the same renderer, at WARNING and above.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
SECRET_KEYS = frozenset({"secret", "api_key", "authorization", "password", "token",
                         "mesh_secret", "x-api-key"})
MASK = "***"
_HANDLER_NAME = "mesh_node"


def _is_secret(key: object) -> bool:
    return isinstance(key, str) and (key.lower() in SECRET_KEYS or key.lower().endswith("_secret"))


def _masked(value: object) -> object:
    if isinstance(value, Mapping):
        return {k: MASK if _is_secret(k) else _masked(v) for k, v in value.items()}
    return value


def mask_secrets(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Replace the values of secret-named keys, also inside nested dicts (e.g. headers)."""
    for key in list(event_dict):
        event_dict[key] = MASK if _is_secret(key) else _masked(event_dict[key])
    return event_dict


def _add_node(node_name: str) -> Processor:
    def add_node(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("node", node_name)
        return event_dict

    return add_node


def _renderer(fmt: str, stream: TextIO) -> Processor:
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    if console:
        return structlog.dev.ConsoleRenderer(colors=stream.isatty())
    return structlog.processors.JSONRenderer()


def configure_logging(level: str, fmt: str, node_name: str, stream: TextIO | None = None) -> None:
    """Configure structlog and stdlib logging once (calling again replaces the setup)."""
    out = stream or sys.stderr
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_node(node_name),
        mask_secrets,
    ]
    renderer = _renderer(fmt, out)
    # ConsoleRenderer formats exceptions itself (and warns if format_exc_info ran first).
    tail = [] if isinstance(renderer, structlog.dev.ConsoleRenderer) else [
        structlog.processors.format_exc_info]
    structlog.configure(
        processors=[*shared, *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(shared, renderer, out)


def _route_stdlib(shared: list[Processor], renderer: Processor, out: TextIO) -> None:
    """Send library loggers through our renderer at WARNING+, replacing any earlier handler."""
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)

