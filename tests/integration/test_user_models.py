"""A plant's own detector: `inspection model add` for each family, on small ONNX graphs built here
with onnx.helper in the exporters' output layouts, then the real YOLOX-Nano file registered as a
user model through eval, the CLI and the edge pipeline on the real broker."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from inspection.analytics import AnalyticsReader
from inspection.cli import app
from inspection.config import ConfigError, DetectConfig, ModelConfig, load_settings
from inspection.detect import ModelMismatchError, UnknownModelError, available_models, create_detector, load_spec
from inspection.detect.registry import register_model, remove_model

runner = CliRunner()
CLASSES = ["scratch", "dent", "missing clip"]
WHITE = 255


@pytest.fixture
def model_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("INSPECTION_MODEL_DIR", str(folder))
    return folder


@pytest.fixture
def classes_file(tmp_path) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text("# defect classes\n" + "\n".join(CLASSES) + "\n")
    return path


def gate_by_centre_pixel(input_name: str, layout: str, scale: float, offset: float) -> list:
    """Nodes computing g (N, 1, 1): the tile's centre pixel (channel 0) brought to 0 (black tile) ..
    1 (white tile) through the model's own normalisation, so detections appear on white tiles only."""
    if layout == "NCHW":
        starts, ends, axes = [0, 150, 150], [1, 151, 151], [1, 2, 3]
    else:
        starts, ends, axes = [150, 150, 0], [151, 151, 1], [1, 2, 3]
    return [
        helper.make_node("Slice", [input_name, "g_starts", "g_ends", "g_axes"], ["g_pixel"]),
        helper.make_node("Reshape", ["g_pixel", "g_shape"], ["g_flat"]),
        helper.make_node("Mul", ["g_flat", "g_scale"], ["g_scaled"]),
        helper.make_node("Add", ["g_scaled", "g_offset"], ["g"]),
    ], [
        numpy_helper.from_array(np.array(starts, np.int64), "g_starts"),
        numpy_helper.from_array(np.array(ends, np.int64), "g_ends"),
        numpy_helper.from_array(np.array(axes, np.int64), "g_axes"),
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "g_shape"),
        numpy_helper.from_array(np.array(scale, np.float32), "g_scale"),
        numpy_helper.from_array(np.array(offset, np.float32), "g_offset"),
    ]


def save_model(path: Path, nodes: list, inits: list, inputs: list, outputs: list) -> Path:
    graph = helper.make_graph(nodes, "exported", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def yolo_points(size: int) -> int:
    return sum((size // s) ** 2 for s in (8, 16, 32))


def yolov8_export(path: Path, size: int = 320) -> tuple[Path, list]:
    """Ultralytics layout: images [N,3,H,W] RGB /255 -> output0 [N, 4 + C, A] (cx, cy, w, h pixels, sigmoid scores)."""
    a, c = yolo_points(size), len(CLASSES)
    boxes = np.zeros((1, 4, a), np.float32)
    scores = np.zeros((1, c, a), np.float32)
    planted = [
        (17, (100.0, 50.0, 40.0, 20.0), 2, 0.9),
        (1000, (200.0, 150.0, 60.0, 80.0), 0, 0.75),
        (2000, (280.0, 290.0, 60.0, 30.0), 1, 0.6),
    ]
    for anchor, (cx, cy, w, h), cls, score in planted:
        boxes[0, :, anchor] = cx, cy, w, h
        scores[0, cls, anchor] = score
    gate, inits = gate_by_centre_pixel("images", "NCHW", 1.0, 0.0)  # input already /255
    nodes = [
        *gate,
        helper.make_node("Mul", ["g", "zero"], ["g0"]),
        helper.make_node("Add", ["box_const", "g0"], ["boxes"]),
        helper.make_node("Mul", ["score_const", "g"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1),
    ]
    inits += [
        numpy_helper.from_array(boxes, "box_const"),
        numpy_helper.from_array(scores, "score_const"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    save_model(
        path,
        nodes,
        inits,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 4 + c, a])],
    )
    expected = [
        ((cx - w / 2, cy - h / 2, min(cx + w / 2, 300), min(cy + h / 2, 300)), cls, score)
        for _, (cx, cy, w, h), cls, score in planted
    ]
    return path, expected


def yolox_export(path: Path, size: int = 320) -> tuple[Path, list]:
    """YOLOX layout: images [N,3,H,W] BGR 0..255 -> output [N, A, 5 + C]: grid offsets, log sizes, objectness, class scores."""
    a, c = yolo_points(size), len(CLASSES)
    raw = np.zeros((1, a, 5 + c), np.float32)
    raw[0, :, 2:4] = -10.0  # tiny boxes elsewhere
    planted = [((12, 6), 8, (100.0, 50.0, 40.0, 20.0), 2, 0.9), ((3, 5), 16, (60.0, 90.0, 32.0, 48.0), 1, 0.7)]
    expected = []
    for (gx, gy), stride, (cx, cy, w, h), cls, score in planted:
        offset = {8: 0, 16: (size // 8) ** 2, 32: (size // 8) ** 2 + (size // 16) ** 2}[stride]
        index = offset + gy * (size // stride) + gx
        raw[0, index, :4] = cx / stride - gx, cy / stride - gy, math.log(w / stride), math.log(h / stride)
        raw[0, index, 4] = 1.0
        raw[0, index, 5 + cls] = score
        expected.append(((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), cls, score))
    gate, inits = gate_by_centre_pixel("images", "NCHW", 1 / 255, 0.0)  # BGR 0..255 input
    # output = raw * (box_mask + g * obj_mask): boxes and class scores as planted, objectness gated per tile
    obj_mask = np.zeros((1, 1, 5 + c), np.float32)
    obj_mask[..., 4] = 1.0
    nodes = [
        *gate,
        helper.make_node("Mul", ["g", "obj_mask"], ["gated"]),
        helper.make_node("Add", ["gated", "box_mask"], ["factor"]),
        helper.make_node("Mul", ["raw_const", "factor"], ["output"]),
    ]
    inits += [
        numpy_helper.from_array(raw, "raw_const"),
        numpy_helper.from_array(obj_mask, "obj_mask"),
        numpy_helper.from_array(1.0 - obj_mask, "box_mask"),
    ]
    save_model(
        path,
        nodes,
        inits,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", a, 5 + c])],
    )
    return path, expected


def ssd_export(path: Path, anchors: np.ndarray) -> tuple[Path, list]:
    """TF OD API raw layout: NHWC [N,300,300,3] in -1..1 -> box encodings [N, A, 1, 4] and sigmoid scores [N, A, 1 + C]."""
    a, c = len(anchors), len(CLASSES)
    enc = np.zeros((1, a, 1, 4), np.float32)  # zero encodings decode to the anchor box itself
    scores = np.zeros((1, a, 1 + c), np.float32)
    planted = [(400, 1, 0.8), (1500, 3, 0.65)]  # (anchor, score column, score); column 0 is background
    for anchor, column, score in planted:
        scores[0, anchor, column] = score
    gate, inits = gate_by_centre_pixel("Preprocessor/sub:0", "NHWC", 0.5, 0.5)  # (x - 127.5)/127.5 -> 0..1
    nodes = [
        *gate,
        helper.make_node("Mul", ["g", "zero"], ["g0"]),
        helper.make_node("Reshape", ["g0", "g4"], ["g04"]),
        helper.make_node("Add", ["enc_const", "g04"], ["concat:0"]),
        helper.make_node("Mul", ["score_const", "g"], ["Postprocessor/convert_scores:0"]),
    ]
    inits += [
        numpy_helper.from_array(enc, "enc_const"),
        numpy_helper.from_array(scores, "score_const"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), "g4"),
    ]
    save_model(
        path,
        nodes,
        inits,
        [helper.make_tensor_value_info("Preprocessor/sub:0", TensorProto.FLOAT, ["N", 300, 300, 3])],
        [
            helper.make_tensor_value_info("concat:0", TensorProto.FLOAT, ["N", a, 1, 4]),
            helper.make_tensor_value_info("Postprocessor/convert_scores:0", TensorProto.FLOAT, ["N", a, 1 + c]),
        ],
    )
    expected = []
    for anchor, column, score in planted:
        ymin, xmin, ymax, xmax = np.clip(anchors[anchor], 0, 1) * 300
        expected.append(((xmin, ymin, xmax, ymax), column - 1, score))
    return path, expected


def white_and_black_tiles() -> np.ndarray:
    tiles = np.zeros((3, 300, 300, 3), np.uint8)
    tiles[1] = WHITE
    return tiles


def assert_found(found, expected: list, tile: int = 1) -> None:
    """The planted boxes, classes and scores on the white tile, nothing on the black ones."""
    assert set(found.tile_index.tolist()) == {tile}
    order = np.argsort(-found.score)
    assert len(found) == len(expected)
    for k, (box, cls, score) in zip(order, sorted(expected, key=lambda e: -e[2])):
        np.testing.assert_allclose(found.xyxy[k], box, atol=0.05)
        assert found.class_id[k] == cls and found.score[k] == pytest.approx(score, abs=1e-5)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_yolov8_export_registered_and_decoded(model_dir, classes_file, tmp_path, backend):
    if backend == "torch":
        pytest.importorskip("torch", reason="backend torch needs torch (pip install 'inspection[torch]')")
    path, expected = yolov8_export(tmp_path / "best.onnx")
    spec = register_model("door-defects", path, "yolov8", classes_file)
    assert (spec.family, spec.input_size, spec.layout, spec.channel_order, spec.fit) == (
        "yolov8",
        (320, 320),
        "NCHW",
        "RGB",
        "pad",
    )
    assert spec.class_names == dict(enumerate(CLASSES)) and (model_dir / "door-defects" / "best.onnx").is_file()
    detector = create_detector(ModelConfig(name="door-defects", backend=backend, device="cpu"), DetectConfig())
    assert_found(detector.detect(white_and_black_tiles()), expected)


def test_yolox_export_registered_and_decoded(model_dir, classes_file, tmp_path):
    path, expected = yolox_export(tmp_path / "yolox_s.onnx")
    spec = register_model("yolox-plant", path, "yolox", classes_file, input_size=320)
    assert (spec.channel_order, spec.std, spec.pad_value) == ("BGR", (1.0, 1.0, 1.0), 114)
    detector = create_detector(ModelConfig(name="yolox-plant", backend="onnxruntime"), DetectConfig())
    assert_found(detector.detect(white_and_black_tiles()), expected)


def test_ssd_export_registered_and_decoded(model_dir, classes_file, tmp_path, ssd_dir):
    anchors = np.load(ssd_dir / "anchors_300.npy")  # TF's own anchors, not the generator under test
    path, expected = ssd_export(tmp_path / "ssd.onnx", anchors)
    spec = register_model("ssd-plant", path, "ssd", classes_file)
    assert spec.background_columns == (0,) and spec.decoder["anchors"]["feature_maps"] == [19, 10, 5, 3, 2, 1]
    detector = create_detector(ModelConfig(name="ssd-plant", backend="onnxruntime"), DetectConfig())
    assert_found(detector.detect(white_and_black_tiles()), expected)


def test_a_file_of_another_family_is_refused_with_the_family_it_looks_like(model_dir, classes_file, tmp_path, yolox_onnx):
    path, _ = yolov8_export(tmp_path / "best.onnx")
    with pytest.raises(
        ModelMismatchError, match=r"its outputs have the yolov8 layout.*looks like a YOLOv8/YOLO11 export.*--family yolov8"
    ):
        register_model("wrong", path, "yolox", classes_file)
    with pytest.raises(ModelMismatchError, match=r"--family yolox"):
        register_model("wrong", yolox_onnx, "yolov8", classes_file)
    four = tmp_path / "four.txt"
    four.write_text("a\nb\nc\nd\n")
    with pytest.raises(ModelMismatchError, match=r"7 values per box on axis 1, yolov8 with 4 classes has 8"):
        register_model("wrong", path, "yolov8", four)
    assert "wrong" not in available_models()


def test_builtin_model_on_a_file_of_another_family_fails_before_the_runtime(model_dir, ssd_onnx):
    """What was OpenCV's "'(int)outnames.size()' is 1 must be equal to 'noutputs' is 2"."""
    with pytest.raises(
        ModelMismatchError, match=r"model yolox_nano \(family yolox\) cannot use .*raw_fp32.onnx.*looks like an SSD export"
    ):
        create_detector(ModelConfig(name="yolox_nano", backend="onnxruntime", path=ssd_onnx), DetectConfig())


def test_unknown_model_names_lists_what_exists(model_dir, classes_file, tmp_path):
    register_model("door-defects", yolov8_export(tmp_path / "best.onnx")[0], "yolov8", classes_file)
    assert available_models() == ["ssd_mobilenet_v2_coco", "yolox_nano", "door-defects"]
    with pytest.raises(
        ConfigError,
        match=r"model.name: .*unknown model 'door_defects'.*built-in: ssd_mobilenet_v2_coco, yolox_nano.*door-defects",
    ):
        load_settings(overrides={"model.name": "door_defects"})
    assert load_settings(overrides={"model.name": "door-defects"}).model.name == "door-defects"
    with pytest.raises(UnknownModelError, match="inspection model add NAME"):
        load_spec("nothing")
    with pytest.raises(ValueError, match="built-in model"):
        register_model("yolox_nano", tmp_path / "best.onnx", "yolov8", classes_file)
    with pytest.raises(FileExistsError, match="--force"):
        register_model("door-defects", tmp_path / "best.onnx", "yolov8", classes_file)
    assert remove_model("door-defects") == model_dir / "door-defects" and "door-defects" not in available_models()


# -- the YOLOX-Nano file as a plant's model --------------------------------------------------------


@pytest.fixture
def plant_yolox(model_dir, yolox_onnx, shared_coco_names) -> str:
    """YOLOX-Nano registered from its file, class names from a Darknet-style coco.names (motorbike, tvmonitor, …)."""
    register_model("plant-yolox", yolox_onnx, "yolox", shared_coco_names)
    return "plant-yolox"


@pytest.fixture
def shared_coco_names(yolox_onnx) -> Path:
    names = yolox_onnx.parents[1] / "nanodet_m" / "coco.names"
    if not names.is_file():
        pytest.skip(f"{names} not found (set INSPECTION_SHARED)")
    return names


def test_user_model_through_eval_and_model_list(plant_yolox, coco_tiny, tmp_path):
    out = tmp_path / "eval-plant.json"
    result = runner.invoke(
        app,
        [
            "eval",
            "--images",
            str(coco_tiny / "val2017"),
            "--annotations",
            str(coco_tiny / "annotations" / "instances_val2017.json"),
            "--model",
            plant_yolox,
            "--max-tiles",
            "24",
            "--json",
            str(out),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    # class ids 0..79 in the model, matched to COCO's category ids by name (Darknet spellings included)
    assert data["model"] == plant_yolox and data["classes_scored"] == 80
    assert 0.2 < data["tile"]["mAP"] < 0.4 and abs(data["frame"]["mAP"] - data["tile"]["mAP"]) <= 0.005
    listing = runner.invoke(app, ["model", "list", "--results", str(tmp_path)], env={"COLUMNS": "250"})
    assert listing.exit_code == 0, listing.output
    block = listing.output.split("plant-yolox", 1)[1]
    assert "user model" in block and "family yolox" in block and "80 classes: person, bicycle, car, motorbike" in block
    assert "yolox_nano_dynamic.onnx" in block and "onnxruntime fp32" in block
    assert f"{data['tile']['mAP']:.3f} onnxruntime fp32" in block


def test_model_add_command(model_dir, yolox_onnx, shared_coco_names):
    args = ["model", "add", "plant-yolox", "--onnx", str(yolox_onnx), "--classes", str(shared_coco_names)]
    wrong = runner.invoke(app, [*args, "--family", "yolov8"], env={"COLUMNS": "250"})
    assert wrong.exit_code == 1 and "error:" in wrong.output and "--family yolox" in wrong.output
    ok = runner.invoke(app, [*args, "--family", "yolox"], env={"COLUMNS": "250"})
    assert ok.exit_code == 0, ok.output
    assert "registered plant-yolox (yolox, input 320×320, 80 classes" in ok.output
    assert json.loads((model_dir / "plant-yolox" / "model.json").read_text())["class_names"]["3"] == "motorbike"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_user_model_through_the_edge_on_the_real_broker(plant_yolox, shared_coco_names, kafka_config, store_db_url):
    """A small car from the line simulator through tansu into the database, detected by the user
    model: class ids are its score columns, class names the ones its classes file gave."""
    from sqlalchemy import text

    from inspection.config import LineConfig, PipelineConfig, Settings, StoreConfig
    from inspection.edge import EdgePipeline, create_detectors
    from inspection.kafka import FrameProducer, ensure_topics
    from inspection.store import ResultStore
    from inspection.tiling import TileGrid
    from synthetic.line import LineSimulator
    from synthetic.photos import PhotoFrameSource

    settings = Settings(
        model=ModelConfig(name=plant_yolox, backend="onnxruntime"),
        kafka=kafka_config,
        store=StoreConfig(url=store_db_url, image_dir=None),
        line=LineConfig(cameras=2, shots_per_camera=1, takt_s=600.0),
        pipeline=PipelineConfig(decode_workers=2, queue_size=2),
    )
    ensure_topics(kafka_config.bootstrap_servers, settings.kafka)
    with FrameProducer(kafka_config.bootstrap_servers, settings.kafka) as producer:
        produced = LineSimulator(settings.line, PhotoFrameSource(TileGrid()), producer).run(1, realtime=False)
    store = ResultStore.open(settings.store)
    try:
        pipeline = EdgePipeline(settings, create_detectors(settings), store, kafka_config.bootstrap_servers)
        stats = pipeline.run(stop_when=lambda s: s.frames_handled >= len(produced))
        summary = AnalyticsReader(store.engine).car_row(produced[0].car_id)
        assert (summary.frames_stored, summary.errors) == (2, 0) and summary.complete
        assert summary.detections == stats.detections > 0
        with store.engine.connect() as conn:
            runs = conn.execute(text("SELECT model, backend FROM runs")).all()
            rows = conn.execute(text("SELECT DISTINCT class_id, class_name FROM detections")).all()
    finally:
        store.close()
    names = [n.strip() for n in shared_coco_names.read_text().splitlines() if n.strip()]
    assert runs == [(plant_yolox, "onnxruntime")]
    assert rows and all(names[class_id] == class_name for class_id, class_name in rows)


def test_bench_and_plan_take_a_user_model(plant_yolox, coco_tiny, tmp_path):
    bench = runner.invoke(
        app,
        [
            "bench",
            "--combo",
            f"{plant_yolox}:onnxruntime:fp32",
            "--batch-sizes",
            "64",
            "--repeats",
            "1",
            "--no-naive",
            "--out",
            str(tmp_path),
        ],
        env={"COLUMNS": "200"},
    )
    assert bench.exit_code == 0, bench.output
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {plant_yolox}
    (tmp_path / "eval_plant.json").write_text(
        json.dumps(
            {"model": plant_yolox, "backend": "onnxruntime", "precision": "fp32", "tile": {"mAP": 0.29}, "frame": {"mAP": 0.29}}
        )
    )
    plan = runner.invoke(app, ["plan", "--deadline", "3600", "--results", str(tmp_path)], env={"COLUMNS": "200"})
    assert plan.exit_code == 0, plan.output
    assert f"choose {plant_yolox} / onnxruntime / fp32" in plan.output and "0.290" in plan.output
    unknown = runner.invoke(
        app, ["bench", "--combo", "door-defects:onnxruntime:fp32", "--batch-sizes", "64"], env={"COLUMNS": "200"}
    )
    assert unknown.exit_code == 1 and "unknown model 'door-defects'" in unknown.output and plant_yolox in unknown.output
