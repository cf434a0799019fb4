"""Shared fixtures: where the project's test data lives (../shared, never committed) and models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INSPECTION_SHARED", REPO.parent / "shared"))
SSD_DIR = SHARED / "models" / "ssd_mobilenet_v2_coco"
YOLOX_ONNX = SHARED / "models" / "yolox_nano" / "yolox_nano_dynamic.onnx"
COCO_TINY = SHARED / "data" / "coco_tiny"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data {path} not found (set INSPECTION_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def ssd_onnx() -> Path:
    return _need(SSD_DIR / "raw_fp32.onnx")


@pytest.fixture(scope="session")
def ssd_dir() -> Path:
    return _need(SSD_DIR)


@pytest.fixture(scope="session")
def yolox_onnx() -> Path:
    return _need(YOLOX_ONNX)


@pytest.fixture(scope="session")
def coco_tiny() -> Path:
    return _need(COCO_TINY)
