"""Shared fixtures: where the project's test data lives (../shared, never committed) and models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# pytest-xdist workers inherit COLUMNS=80; rich would fix its consoles' width to it when the CLI is
# imported, and the CLI tests, which size the terminal per call (CliRunner's env), would see it wrap.
os.environ.pop("COLUMNS", None)

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


@pytest.fixture(scope="session", autouse=True)
def session_model_dir(tmp_path_factory):
    """Converted and quantized models go to a folder of this test session, not the developer's
    cache: the first test needing the default model's ONNX graph converts it there, as a fresh
    machine would. INSPECTION_MODEL_DIR set by the caller is kept."""
    if os.environ.get("INSPECTION_MODEL_DIR"):
        yield Path(os.environ["INSPECTION_MODEL_DIR"])
        return
    folder = tmp_path_factory.mktemp("model-cache")
    os.environ["INSPECTION_MODEL_DIR"] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop("INSPECTION_MODEL_DIR", None)
