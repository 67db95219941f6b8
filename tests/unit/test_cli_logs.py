"""configure_logging: JSON/console, level, node on every line, secrets masked, stdlib routed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest
import structlog

from mesh_node.logs import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_event_level_iso_time_and_node() -> None:
    buf = io.StringIO()
    configure_logging("info", "json", "studio", stream=buf)
    structlog.get_logger().info("member_joined", peer="abc", incarnation=3)
    (line,) = _lines(buf)
    assert line["event"] == "member_joined" and line["level"] == "info"
    assert line["node"] == "studio" and line["peer"] == "abc" and line["incarnation"] == 3
    assert datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).tzinfo


def test_level_filters_structlog_events() -> None:
    buf = io.StringIO()
    configure_logging("warning", "json", "n", stream=buf)
    log = structlog.get_logger()
    log.info("quiet")
    log.warning("loud")
    assert [line["event"] for line in _lines(buf)] == ["loud"]


def test_secrets_are_masked_also_nested() -> None:
    buf = io.StringIO()
    configure_logging("debug", "json", "n", stream=buf)
    structlog.get_logger().info("request", secret="s1", api_key="k1", mesh_secret="s2",
                                headers={"Authorization": "Bearer t1", "accept": "x"})
    text = buf.getvalue()
    for leaked in ("s1", "k1", "s2", "t1"):
        assert f'"{leaked}"' not in text and f"Bearer {leaked}" not in text
    (line,) = _lines(buf)
    assert line["secret"] == "***" and line["headers"] == {"Authorization": "***", "accept": "x"}


def test_stdlib_loggers_render_the_same_way_at_warning_and_above() -> None:
    buf = io.StringIO()
    configure_logging("debug", "json", "mini", stream=buf)
    logging.getLogger("hypercorn.error").info("noise")
    logging.getLogger("httpx").warning("upstream %s slow", "h1")
    (line,) = _lines(buf)
    assert line["event"] == "upstream h1 slow" and line["logger"] == "httpx"
    assert line["level"] == "warning" and line["node"] == "mini" and "timestamp" in line


def test_reconfiguring_does_not_duplicate_stdlib_output() -> None:
    buf = io.StringIO()
    configure_logging("info", "json", "n", stream=buf)
    configure_logging("info", "json", "n", stream=buf)
    logging.getLogger("httpx").error("once")
    assert len(_lines(buf)) == 1


def test_console_format_and_auto_on_a_pipe() -> None:
    console = io.StringIO()
    configure_logging("info", "console", "n", stream=console)
    structlog.get_logger().info("placement_changed", model="m1")
    out = console.getvalue()
    assert "placement_changed" in out and "model" in out and "m1" in out
    assert not out.lstrip().startswith("{")
    piped = io.StringIO()  # not a TTY: auto means JSON
    configure_logging("info", "auto", "n", stream=piped)
    structlog.get_logger().info("x")
    assert _lines(piped)[0]["event"] == "x"


def test_capture_logs_still_works_for_event_contracts() -> None:
    configure_logging("info", "json", "n", stream=io.StringIO())
    with structlog.testing.capture_logs() as logs:
        structlog.get_logger().info("backend_started", model="m")
    assert logs == [{"event": "backend_started", "model": "m", "log_level": "info"}]
