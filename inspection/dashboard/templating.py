"""Jinja2 templates of the pages: autoescape on for everything (database text renders as text)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import jinja2
from fastapi.templating import Jinja2Templates

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _url_part(value: object) -> str:
    """A path segment: every reserved character percent-encoded ('/' too)."""
    return quote(str(value), safe="")


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(urlpart=_url_part, when=_when, seconds=_seconds, percent=_percent)
    return Jinja2Templates(env=env)


templates = make_templates()
