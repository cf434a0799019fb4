"""Reading the project's own Python source in tests."""

from __future__ import annotations

import ast
import time


def parse_python(source: str, attempts: int = 5) -> ast.Module:
    """`ast.parse`, again when CPython raises its spurious "AST constructor recursion depth mismatch" SystemError
    (python/cpython#106905: the AST builder's depth bookkeeping goes wrong, reported mostly in threaded programs;
    seen once here, Python 3.11.7, in the newest-releases suite). Any other error, or the same one every time,
    is raised."""
    for attempt in range(attempts):
        try:
            return ast.parse(source)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")
