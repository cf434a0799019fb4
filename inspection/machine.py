"""Settings of this machine rather than of a site (the site's are `config.Settings`).

From the environment alone (INSPECTION_<NAME>, one underscore; pydantic-settings), read when used: the
model registry resolves model names while a site's `Settings` are still being validated, so where models
live cannot be one of them. The README's settings table lists these with the site's.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MACHINE_ENV_PREFIX = "INSPECTION_"


class MachineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=MACHINE_ENV_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True)

    model_dir: Path | None = Field(
        None,
        description="models (converted, quantized, your own from `inspection model add`) and TensorRT engines; "
        "None: the user cache directory",
    )
