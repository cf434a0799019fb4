"""Settings of the dashboard process (from `inspection dashboard` flags and the site config)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from platformdirs import user_cache_dir
from pydantic import BaseModel, Field

from ..config import GridConfig, ReviewConfig
from ..review.auth import Reviewers

TOKEN_ENV = "INSPECTION_DASHBOARD_TOKEN"


class BindRefusedError(ValueError):
    """A non-loopback address without a token (the message says what to pass)."""


class DashboardConfig(BaseModel):
    db_url: str = Field(description="results database (read-only): sqlite:///… or postgresql+psycopg://…")
    images_dir: Path | None = Field(None, description="the edge's content-addressed image store (store.image_dir)")
    thumbs_dir: Path = Field(default_factory=lambda: Path(user_cache_dir("inspection")) / "thumbnails")
    host: str = "127.0.0.1"
    port: int = Field(8050, ge=0, le=65535)
    token: str | None = Field(None, description="required on every request when set; required to bind a non-loopback address")
    cameras: int = Field(5, gt=0, description="line.cameras: columns of a car's frame grid")
    grid: GridConfig = GridConfig()
    poll_s: float = Field(2.0, gt=0, le=5.0, description="how often open pages check for new results (<= 5 s)")
    reviewers: Reviewers = Field(
        default_factory=Reviewers, description="reviewer name -> SHA-256 of the token; none: reviewing is off"
    )
    review: ReviewConfig = ReviewConfig()
    score_threshold: float = Field(0.3, ge=0.0, le=1.0, description="detect.score_threshold: the operating threshold")
    detections_window_s: float = Field(
        3600.0, gt=0, description="the detections page's default time range, ending at the newest capture"
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token: anyone on the network could read it."""
    if not is_loopback(host) and not token:
        raise BindRefusedError(
            f"--host {host} is reachable from other machines: pass --token T (or set {TOKEN_ENV}); "
            "every page and API call must then present it. Without a token, bind 127.0.0.1."
        )
