"""`inspection model ...`: list, convert, add, remove, quantize, build-engine."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .base import ConfigOpt, _model_errors, _settings, console, model_app
from .errors import CliError, UsageError


@model_app.command("list")
def model_list(
    results: list[Path] = typer.Option([Path("benchmarks")], help="eval JSON files or folders holding them (measured mAP)"),
) -> None:
    """Built-in and user models: family, input, classes, files present (and where), backends runnable now, measured mAP."""
    from ..detect import available_models, load_spec
    from ..detect.base import model_cache_dir
    from ..detect.inventory import model_status
    from ..tools.plan import load_accuracy

    accuracy = load_accuracy([p for p in results if p.exists()])
    console.print(f"model directory (user models, converted and quantized files): {model_cache_dir()}")
    for name in available_models():
        console.print()
        try:
            status = model_status(load_spec(name), accuracy)
        except _model_errors() as exc:
            console.print(f"[bold]{name}[/bold]  [red]{escape(str(exc))}[/red]")
            continue
        spec = status.spec
        names = list(spec.class_names.values())
        source = "built-in" if spec.source == "built-in" else f"user model, {spec.source}"
        console.print(f"[bold]{name}[/bold]  ({escape(source)})")
        console.print(
            f"  family {spec.family}, input {spec.input_size[0]}×{spec.input_size[1]} {spec.layout} {spec.channel_order}, "
            f"tiles {spec.fit}; {len(names)} classes: {escape(', '.join(names[:6]))}{', …' if len(names) > 6 else ''}"
        )
        for f in status.files:
            where = escape(str(f.path)) if f.path else f"[yellow]missing[/yellow]: {escape(f.how)}"
            console.print(f"  {f.kind:<20} {where}")
        console.print(f"  runs now on: {', '.join(status.backends) or '[yellow]nothing yet[/yellow]'}")
        measured = ", ".join(f"{v:.3f} {k}" for k, v in sorted(status.accuracy.items()))
        console.print(f"  measured tile mAP (inspection eval): {measured or 'none yet'}")


@model_app.command("convert")
def model_convert(name: str = typer.Argument("ssd_mobilenet_v2_coco"), out: Optional[Path] = typer.Option(None)) -> None:
    """Frozen TF graph -> raw ONNX in the model cache (no TensorFlow needed; ONNX backends also do this on first use)."""
    from ..detect import load_spec
    from ..detect.convert import convert_to_onnx

    path = convert_to_onnx(load_spec(name), out, progress=lambda text: console.print(escape(text)))
    console.print(f"wrote {path}")


@model_app.command("add")
def model_add(
    name: str = typer.Argument(..., help="the name model.name will use (lower case, digits, _ - .)"),
    onnx: Path = typer.Option(..., "--onnx", help="the exported ONNX file (copied into the model directory)"),
    family: str = typer.Option(
        ..., help="output layout: ssd (TF OD API box encodings + scores), yolox, yolov8 (Ultralytics YOLOv8/YOLO11)"
    ),
    classes: Path = typer.Option(..., help="class names, one per line, in the model's score-column order"),
    input_size: Optional[int] = typer.Option(
        None, help="network input side for a file with a dynamic input (default: the file's, else 320)"
    ),
    fit: Optional[str] = typer.Option(None, help="how a tile becomes the input: pad (YOLO default) or resize (SSD default)"),
    force: bool = typer.Option(False, help="replace a user model of the same name"),
) -> None:
    """Register a plant's own detector: checked against its family, then every backend, eval, bench, plan and the edge take it by name."""
    from ..detect.registry import register_model

    if fit not in (None, "pad", "resize"):
        raise UsageError(f"--fit {fit!r}: allowed pad, resize")
    spec = register_model(name, onnx, family, classes, input_size, fit, force)
    console.print(
        f"registered {spec.name} ({spec.family}, input {spec.input_size[0]}×{spec.input_size[1]}, {len(spec.class_names)} classes, "
        f"tiles {spec.fit}): {spec.source}"
    )
    console.print(f"use it with model.name={spec.name}, e.g. INSPECTION__MODEL__NAME={spec.name} inspection demo")


@model_app.command("remove")
def model_remove(name: str = typer.Argument(...)) -> None:
    """Delete a user model (its metadata and the copied files) from the model directory."""
    from ..detect.registry import remove_model

    folder = remove_model(name)
    console.print(f"removed {folder}")


@model_app.command("quantize")
def model_quantize(
    name: str = typer.Argument("ssd_mobilenet_v2_coco"),
    images: Optional[Path] = typer.Option(
        None, help="calibration images: real line frames (cut by the grid) or any photos (default: the demo's photo frames)"
    ),
    annotations: Optional[Path] = typer.Option(
        None, help="with --images: a COCO instances JSON, to calibrate on the composer's mosaics"
    ),
    tiles: int = typer.Option(256, min=1, help="calibration tiles"),
    method: str = typer.Option("minmax", help="activation range calibration: minmax, percentile or entropy"),
    for_: str = typer.Option(
        "onnxruntime,tensorrt", "--for", help="which QDQ graphs to write: onnxruntime (CPU), tensorrt, or both"
    ),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """INT8 by explicit quantization: the raw ONNX graph -> QDQ graphs (per-channel INT8 weights, activations calibrated on real tiles)."""
    from ..detect import load_spec
    from ..tiling import TileGrid
    from ..tools.quantize import FLAVOURS, QuantizeSettings, quantize_model

    flavours = [f.strip() for f in for_.split(",") if f.strip()]
    unknown = [f for f in flavours if f not in FLAVOURS]
    if unknown or not flavours:
        raise UsageError(f"--for {for_!r}: allowed {', '.join(FLAVOURS)} (comma-separated)")
    settings = _settings(config)
    spec = load_spec(name)
    written = quantize_model(
        spec,
        TileGrid.from_config(settings.grid),
        images,
        annotations,
        QuantizeSettings(method=method, tiles=tiles),
        flavours=flavours,
        progress=lambda text: console.print(escape(text)),
    )
    for flavour, path in written.items():
        console.print(f"{flavour}: {path}")
    console.print(
        f"run it with model.precision=int8 (onnxruntime), or: inspection model build-engine {name} --precision int8 (TensorRT)"
    )


@model_app.command("build-engine")
def model_build_engine(
    name: str = typer.Argument("ssd_mobilenet_v2_coco"),
    precision: str = typer.Option("fp16", help="fp32, fp16 or int8 (int8: from the QDQ graph of `inspection model quantize`)"),
    calibration_images: Optional[Path] = typer.Option(
        None, help="int8 without a QDQ graph yet: quantize first, calibrating on these real line frames"
    ),
    onnx: Optional[Path] = typer.Option(None, help="the ONNX graph (default: the model cache; for int8 its TensorRT QDQ graph)"),
    cache_dir: Optional[Path] = typer.Option(None, help="engine and timing caches (default: <model cache>/engines)"),
    contexts: int = typer.Option(2, min=1, max=8, help="optimisation profiles = execution contexts in flight"),
    force: bool = typer.Option(False, help="rebuild even if a cached engine matches"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """TensorRT 10: ONNX -> engine (batch 1..64 profile, FP16, or INT8 by explicit quantization), cached by model hash, GPU and TensorRT version."""
    import importlib.util

    from ..detect import load_spec
    from ..tiling import TileGrid
    from ..tools.engines import build_model_engine

    if precision not in ("fp32", "fp16", "int8"):
        raise UsageError(f"--precision {precision!r}: allowed fp32, fp16, int8")
    missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
    if missing:
        raise CliError(
            f"building an engine needs {' and '.join(missing)}: on a Jetson JetPack 6 ships TensorRT 10 (python3-libnvinfer) "
            "and pycuda installs with pip install 'inspection[gpu]'; on an x86 GPU node: the NGC TensorRT image or NVIDIA's "
            "pip install 'tensorrt>=10,<11', then pip install 'inspection[gpu]' (see deploy/jetson/README.md)"
        )
    settings = _settings(config)
    path = build_model_engine(
        load_spec(name),
        precision,
        TileGrid.from_config(settings.grid),
        cache_dir or (Path(settings.model.engine_cache_dir) if settings.model.engine_cache_dir else None),
        onnx=onnx,
        calibration_images=calibration_images,
        profiles=contexts,
        force=force,
        progress=lambda text: console.print(escape(text)),
    )
    console.print(f"engine ready: {path}")
