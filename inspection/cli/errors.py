"""The one failure type of the command line: a message and the exit code it ends with."""

from __future__ import annotations


class CliError(Exception):
    """A command failed in a way its message explains; rendered as one `error:` line, exit `exit_code`."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(CliError):
    """A command was called wrongly (exit 2); the message names the right call."""

    exit_code = 2
