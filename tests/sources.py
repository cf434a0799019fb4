"""Reading the project's own Python source in tests."""

from __future__ import annotations

import ast
import time


def parse_python(source: str, attempts: int = 5) -> ast.Module:
    """`ast.parse`, again when CPython < 3.11.8 / 3.12.1 raises its spurious "AST constructor recursion depth
    mismatch" SystemError (python/cpython#106905: the AST builder's depth counter is shared by the interpreter's
    threads, so another thread building an AST at the same moment trips the check; seen once in the
    newest-releases suite). Any other error, or the same one every time, is raised."""
    for attempt in range(attempts):
        try:
            return ast.parse(source)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")
