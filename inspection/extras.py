"""Optional parts of the package and the extra that installs each: a missing one is one clear error.

The edge consumer needs only the core dependencies. What else a command needs comes with an extra:
`[analysis]` (pycocotools, matplotlib, pandas: eval, plots, notebooks), `[demo]` (embedded broker,
sample photos, conversion of the default model, the dashboard), `[convert]` (the default model's
TensorFlow graph package), `[dashboard]` (FastAPI web app), `[torch]`, `[gpu]`.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import `module` or raise MissingExtraError: "<what> needs <module>: pip install 'inspection[<extra>]'"."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{what} needs {module.split('.')[0]}, which is not installed ({exc}): pip install 'inspection[{extra}]'"
        ) from None
