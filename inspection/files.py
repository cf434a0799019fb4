"""Atomic file writes, the one way this project replaces a file.

A file is written beside its target under a hidden temporary name and renamed onto it
(`os.replace`, atomic on one filesystem): a reader sees the old file or the whole new one, a
crash leaves at most a stray temporary file, never a truncated target, and two processes writing
the same target both leave a whole file. Files are created 0666 less the process umask (0644
usually: the dashboard and analysts read what the edge writes; mkstemp's 0600 would hide it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def _temporary_beside(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path beside `target` for a writer that wants a file name (onnx.save, a copy):
    renamed onto `target` when the block ends, removed when it raises."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _temporary_beside(target)
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def write_atomic(target: str | Path, data: bytes | bytearray | memoryview, *, durable: bool = True) -> None:
    """Write `data` to `target` atomically; `durable` also flushes it to disk before the rename
    (what a power cut must not lose; a cache that can be rebuilt may skip it)."""
    with atomic_path(target) as partial:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(partial, flags, 0o666), "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
