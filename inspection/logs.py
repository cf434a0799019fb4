"""Log output of the `inspection` commands: readable on a terminal, one line per record elsewhere.

- `text` on a terminal: rich (colours, aligned columns, wrapped to the terminal's width).
- `text` when stderr is not a terminal (a service, a pod, a redirected file): plain
  `time level logger: message` lines, never wrapped, so log files hold one record per line.
- `json`: one JSON object per line (`time`, `level`, `logger`, `message`, plus `exc_info` when
  there is a traceback), for log collectors (`logging.format: json` or `--log-format json`).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# only matter when something is wrong (asyncua logs every node of the OPC UA address space at INFO; amqtt and
# paho each connection)
QUIET_LOGGERS = ("alembic", "inspection.kafka.librdkafka", "asyncua", "amqtt", "transitions")


def log_handler(fmt: str, stream: TextIO | None = None) -> logging.Handler:
    """The handler for `fmt` ("text" or "json") writing to `stream` (default: stderr)."""
    stream = stream or sys.stderr
    if fmt == "json":
        handler: logging.Handler = logging.StreamHandler(stream)
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                json_ensure_ascii=False,
            )
        )
        return handler
    if fmt != "text":
        raise ValueError(f"log format {fmt!r}: allowed text, json (configs: logging.format)")
    if stream.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        return RichHandler(console=Console(file=stream), show_path=False)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    return handler


def configure_logging(fmt: str = "text", *, verbose: bool = False, stream: TextIO | None = None) -> None:
    """Route the root logger to one handler of `fmt` (replacing earlier ones)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[log_handler(fmt, stream)], force=True)
    if not verbose:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
