"""What the dashboard process runs with: the `dashboard` section of `Settings` and what it takes from the others."""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_cache_dir
from pydantic import Field

from ..config import DashboardSettings, DetectConfig, GridConfig, LineConfig, ReviewConfig, Settings
from ..signal.config import is_loopback

TOKEN_ENV = "INSPECTION_DASHBOARD_TOKEN"  # the --token flag's variable (settings: INSPECTION__DASHBOARD__TOKEN)


class BindRefusedError(ValueError):
    """A non-loopback address without a token (the message says what to pass)."""


class DashboardConfig(DashboardSettings):
    """`Settings.dashboard` plus the values of other sections the dashboard uses; `from_settings` builds it."""

    db_url: str = Field(description="results database (read-only): sqlite:///… or postgresql+psycopg://…")
    images_dir: Path | None = Field(None, description="the edge's content-addressed image store (store.image_dir)")
    cameras: int = Field(LineConfig().cameras, gt=0, description="line.cameras: columns of a car's frame grid")
    grid: GridConfig = GridConfig()
    review: ReviewConfig = ReviewConfig()
    score_threshold: float = Field(
        DetectConfig().score_threshold, ge=0.0, le=1.0, description="detect.score_threshold: the operating threshold"
    )

    @classmethod
    def from_settings(cls, settings: Settings, **changes: object) -> DashboardConfig:
        """The dashboard section of `settings` with store.url, store.image_dir, line.cameras, grid, review and
        detect.score_threshold; `changes` override any of them."""
        values = {
            **dict(settings.dashboard),
            "db_url": settings.store.url,
            "images_dir": settings.store.image_dir,
            "cameras": settings.line.cameras,
            "grid": settings.grid,
            "review": settings.review,
            "score_threshold": settings.detect.score_threshold,
        }
        return cls.model_validate(values | changes)

    @property
    def thumbs(self) -> Path:
        """The thumbnail cache folder: `thumbs_dir`, or the user cache directory's."""
        return self.thumbs_dir or Path(user_cache_dir("inspection")) / "thumbnails"


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token: anyone on the network could read it."""
    if not is_loopback(host) and not token:
        raise BindRefusedError(
            f"--host {host} is reachable from other machines: pass --token T (or set {TOKEN_ENV}); "
            "every page and API call must then present it. Without a token, bind 127.0.0.1."
        )
