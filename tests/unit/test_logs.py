"""Log output: one unwrapped line per record when not on a terminal, JSON objects on request."""

from __future__ import annotations

import io
import json
import logging

import pytest

from inspection.logs import configure_logging, log_handler


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


LONG = "car car-000017 overdue: 5 of 10 frames stored 12.3 s after its deadline; missing " + "cam 1 shots 0-4; " * 20


def test_text_off_a_terminal_is_one_plain_line_per_record() -> None:
    stream = io.StringIO()
    configure_logging("text", stream=stream)
    logging.getLogger("inspection.overdue").warning(LONG)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and len(lines[0]) > 300  # not hard-wrapped at 80 columns
    assert " WARNING inspection.overdue: car car-000017 overdue" in lines[0]


def test_json_is_one_object_per_line_with_level_logger_and_traceback() -> None:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    log = logging.getLogger("inspection.edge.pipeline")
    log.info("car %s met its deadline", "car-000017")
    try:
        raise RuntimeError("database gone")
    except RuntimeError:
        log.exception("pipeline stage persist failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "car car-000017 met its deadline" and first["level"] == "INFO"
    assert first["logger"] == "inspection.edge.pipeline" and "time" in first
    assert second["level"] == "ERROR" and "RuntimeError: database gone" in second["exc_info"]


def test_quiet_loggers_and_bad_format() -> None:
    configure_logging("text", stream=io.StringIO())
    assert logging.getLogger("alembic").level == logging.WARNING
    with pytest.raises(ValueError, match="logging.format"):
        log_handler("xml")
