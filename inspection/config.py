"""Validated settings: one `Settings` object, loaded from YAML + environment + CLI overrides.

Every site-specific value (grid, model, backend, thresholds, broker, topics, database, deadline)
lives here; code receives the validated object and never reads constants of its own.
The defaults are the embedded defaults (`configs/default.yaml` mirrors them): local broker,
SQLite, the onnxruntime CPU backend.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import EnvSettingsSource, NoDecode, SettingsError
from pydantic_settings.sources.utils import parse_env_vars

from .review.auth import ReviewerConfigError, Reviewers
from .rules.config import InspectionConfig
from .signal.config import SignalConfig

ENV_PREFIX = "INSPECTION__"
# Environment variables read directly before they were settings: each names its setting now.
RENAMED_ENV = {"INSPECTION_DB": "INSPECTION__STORE__URL"}

# OpenCV 5 dropped the TensorFlow importer the backend ran on, and OpenCV 4's ONNX importer cannot batch the
# converted graph; on the ONNX graph OpenCV 5 gives the same outputs (to 1e-4) as onnxruntime at 2.2x the time
# (benchmarks/cpu-2core/opencv_retired.json), so the backend was retired rather than ported.
RETIRED_OPENCV = (
    "backend opencv was retired (OpenCV 5 dropped its TensorFlow importer; on the same ONNX graph onnxruntime gives "
    "the same detections 2.2x faster): use model.backend=onnxruntime"
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecondLookConfig(_Section):
    """A second detector call on re-centred tile-sized crops around objects the grid cut (inspection.second_look)."""

    enabled: bool = Field(
        True,
        description="after the first call, objects touching or crossing a cut tile border get a re-centred crop "
        "(one more call of up to max_crops tiles) whose boxes replace the cut pieces",
    )
    max_crops: int = Field(
        12, ge=1, le=64, description="crops per frame (one call); 8-16 keeps the call a fifth of the first one's tiles"
    )
    min_score: float = Field(0.3, ge=0.0, le=1.0, description="a cut box asks for a crop when it scores at least this")
    cover_threshold: float = Field(
        0.5, gt=0.0, le=1.0, description="a crop box replaces the cut pieces it covers by at least this share of their area"
    )
    replace_min_ratio: float = Field(
        1.0, ge=0.0, description="... when it scores at least this share of the piece's score (0: always)"
    )
    nms_iou: float = Field(0.5, gt=0.0, le=1.0, description="IoU at which a crop box and another view's box are one object")
    max_zoom: float = Field(
        3.0,
        ge=1.0,
        description="a cut object longer than a tile gets a window up to this many tiles wide, downscaled to one "
        "tile (zoom-out); longer ones are left to the global view; 1 = tile-sized crops only",
    )
    zoom_margin: float = Field(1.2, ge=1.0, description="a zoom-out window's side: this × the object's longest side")


class GridConfig(_Section):
    """Frame geometry: a frame is cut into `rows × cols` tiles (+ the global view), run in detector calls of `batch_size`."""

    frame_width: int = Field(2700, gt=0)
    frame_height: int = Field(2100, gt=0)
    tile_size: int = Field(300, gt=0)
    overlap: int = Field(0, ge=0, description="pixels shared by neighbouring tiles (stride = tile - overlap)")
    batch_size: int = Field(
        64, gt=0, description="tiles per detector call; a larger grid takes several calls, blank tiles pad the last"
    )
    global_view: bool = Field(
        True,
        description="the first spare slot of the batch holds the whole frame downscaled to one tile "
        "(objects larger than a tile); its boxes are fused with the tiles' (stitch.global_*)",
    )
    second_look: SecondLookConfig = SecondLookConfig()

    @model_validator(mode="after")
    def _check(self) -> GridConfig:
        if self.overlap >= self.tile_size:
            raise ValueError(f"grid.overlap={self.overlap} must be smaller than grid.tile_size={self.tile_size}")
        if self.tile_size > min(self.frame_width, self.frame_height):
            raise ValueError("grid.tile_size must not exceed the frame's width or height")
        return self


class ModelConfig(_Section):
    name: str = Field(
        "ssd_mobilenet_v2_coco",
        description="a built-in model or one registered with `inspection model add` (inspection model list)",
    )
    backend: Literal["onnxruntime", "torch", "tensorrt"] = "onnxruntime"
    precision: Literal["fp32", "fp16", "bf16", "int8"] = Field("fp32", description="bf16: backend torch only")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    path: Path | None = Field(None, description="ONNX file to use instead of the registry's default location")
    threads: int = Field(0, ge=0, description="CPU threads for the backend; 0 = library default")
    cuda_graph: bool = Field(
        True, description="torch/tensorrt on CUDA: capture the fixed-size batch once as a CUDA graph and replay it"
    )
    compile: Literal["none", "default", "max-autotune"] = Field(
        "none",
        description="torch: torch.compile (inductor) the fixed-shape part (normalise, network, decode, top-k) with "
        "fullgraph=True; max-autotune times kernel choices (minutes at start). With cuda_graph the backend's own "
        "capture replays the compiled kernels (inductor's cudagraphs stay off)",
    )
    contexts: int = Field(
        2, ge=1, le=8, description="tensorrt: execution contexts (one optimisation profile each) = batches in flight"
    )
    engine_cache_dir: Path | None = Field(
        None, description="tensorrt: engine, timing and calibration caches; None = <model cache>/engines"
    )

    @field_validator("backend", mode="before")
    @classmethod
    def _not_retired(cls, backend: object) -> object:
        if backend == "opencv":
            raise ValueError(RETIRED_OPENCV)
        return backend

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from .detect.registry import available_models, load_spec

        if name not in available_models():
            load_spec(name)  # raises UnknownModelError listing the built-in and user models
        return name


class DetectConfig(_Section):
    score_threshold: float = Field(0.3, ge=0.0, le=1.0, description="operating threshold for stored detections")
    nms_iou: float = Field(0.6, gt=0.0, le=1.0)
    max_per_tile: int = Field(100, gt=0)
    pre_nms_top_k: int = Field(200, gt=0, description="candidates kept per tile and class before NMS")


class StitchConfig(_Section):
    merge: Literal["none", "nms", "nmm"] = Field(
        "nmm",
        description="how duplicates of one object seen by overlapping tiles are merged (grid.overlap > 0): "
        "nms keeps the best copy, nmm fuses the copies (fusion_*)",
    )
    match_metric: Literal["iou", "ios"] = "ios"
    match_threshold: float = Field(0.5, gt=0.0, le=1.0)
    border_merge: bool = Field(
        True, description="join the halves of an object cut by a tile border (same class, touching the border)"
    )
    border_rule: Literal["cut", "pairwise"] = Field(
        "cut",
        description="cut: both pieces touch the same grid line from opposite sides, pieces of 3+ tiles joined too; "
        "pairwise: the earlier rule (one pass over pairs touching any border)",
    )
    border_tolerance_px: float = Field(6.0, ge=0.0, description="how close to the shared border both halves must end")
    border_min_overlap: float = Field(0.5, gt=0.0, le=1.0, description="1-D IoU of the halves' extents along the border")
    fusion_box: Literal["union", "weighted"] = Field(
        "union", description="a fused box: the union of its members, or their score-weighted mean"
    )
    fusion_score: Literal["max", "noisy_or"] = Field(
        "noisy_or",
        description="a fused box's score: its best member's, or 1 - prod(1 - s) over the members (agreement raises it)",
    )
    fusion_min_ratio: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="a matched box scoring below this share of its keeper's score is suppressed, not fused "
        "(low-score boxes do not widen good ones; 0 = fuse every match, as SAHI's NMM)",
    )
    global_min_size_px: float = Field(
        150.0,
        ge=0.0,
        description="global-view boxes whose longer side (frame pixels) is shorter are dropped: the tiles see those objects better",
    )
    global_match_threshold: float = Field(
        0.5, gt=0.0, le=1.0, description="IoU of a global-view box and a tile box that makes them one object"
    )


class KafkaConfig(_Section):
    bootstrap_servers: str | None = Field(None, description="host:port of a Kafka cluster; None starts the embedded broker")
    topic: str = "frames"
    dlq_topic: str = "frames.dlq"
    group_id: str = "inspection-edge"
    partitions: int = Field(
        12,
        gt=0,
        description="frames topic partitions; 12 divides evenly among 1, 2, 3, 4 or 6 consumers (producers pick frame index mod P)",
    )
    replication_factor: int = Field(-1, ge=-1, description="replicas of created topics; -1 = the broker's default")
    message_max_bytes: int = Field(
        8 * 1024 * 1024, ge=64 * 1024, description="largest frame record; payloads up to this minus 16 KiB"
    )
    session_timeout_ms: int = Field(6000, ge=1000)
    max_poll_interval_ms: int = Field(
        300000,
        ge=1000,
        description="librdkafka max.poll.interval.ms, also the group's rebalance timeout: how long a rebalance waits "
        "for members to rejoin",
    )
    poll_timeout_s: float = Field(0.2, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0, description="how long a command waits for the cluster to answer at start")

    @model_validator(mode="after")
    def _check(self) -> KafkaConfig:
        if self.replication_factor == 0:
            raise ValueError("kafka.replication_factor must be >= 1, or -1 for the broker's default")
        if self.topic == self.dlq_topic:
            raise ValueError(f"kafka.dlq_topic must differ from kafka.topic ({self.topic!r})")
        if self.max_poll_interval_ms < self.session_timeout_ms:
            raise ValueError(
                f"kafka.max_poll_interval_ms ({self.max_poll_interval_ms}) must be at least kafka.session_timeout_ms "
                f"({self.session_timeout_ms}), as librdkafka requires"
            )
        return self


class StoreConfig(_Section):
    url: str = "sqlite:///inspection.db"
    image_dir: Path | None = Field(Path("var/images"), description="content-addressed frame images; None keeps no images")
    connect_retries: int = Field(5, ge=0, description="extra connection attempts at start (0 = try once)")
    connect_backoff_s: float = Field(
        0.5, gt=0, description="wait before the first retry; doubles each retry (up to max_backoff_s)"
    )
    max_backoff_s: float = Field(30.0, gt=0, description="cap of the doubling wait between retries of an unavailable database")
    connect_timeout_s: float = Field(10.0, gt=0, description="PostgreSQL connect timeout per attempt")
    sqlite_busy_timeout_s: float = Field(30.0, gt=0, description="how long a SQLite writer waits for the write lock")


class LineConfig(_Section):
    cameras: int = Field(5, gt=0)
    shots_per_camera: int = Field(19, gt=0)
    takt_s: float = Field(60.0, gt=0, description="seconds between cars; a car's deadline is the next car's arrival")
    deadline_margin: float = Field(
        0.2, ge=0.0, lt=1.0, description="share of a car's deadline `inspection plan` keeps spare when it picks the grid"
    )
    jpeg_quality: int = Field(90, ge=1, le=100)

    @property
    def frames_per_car(self) -> int:
        return self.cameras * self.shots_per_camera


class PipelineConfig(_Section):
    decode: Literal["cpu", "gpu"] = Field(
        "cpu", description="JPEG decode + tiling on the CPU, or on the GPU (nvJPEG; torch backend)"
    )
    decode_workers: int = Field(2, gt=0)
    infer_workers: int = Field(1, gt=0, le=8, description="detector instances, one thread (and CUDA stream) each")
    switch_interval_s: float = Field(0.0005, gt=0, description="CPython thread switch interval while the pipeline runs")
    queue_size: int = Field(4, gt=0, description="bound of each inter-stage queue (frames)")
    stage_timeout_s: float = Field(120.0, gt=0, description="a frame stuck this long in decoding stops the consumer (no commit)")
    workers: int | Literal["auto"] = Field(
        1,
        description="edge worker processes per GPU (or on the CPU), one consumer-group member each, under one "
        "`inspection edge`; auto: 3 per GPU for torch/tensorrt on CUDA, 1 otherwise",
    )
    gpus: list[int] | None = Field(
        None, description="GPU indices the workers are spread over (CUDA_VISIBLE_DEVICES per worker); None: no pinning"
    )
    layout: Literal["auto", "gpu_owner", "processes"] = Field(
        "auto",
        description="gpu_owner: one process owns each GPU (one CUDA context, graph and batch queue) and `workers` "
        "CPU worker processes per GPU feed it through shared memory; processes: `workers` whole pipelines per GPU; "
        "auto: gpu_owner for a GPU backend on CUDA, processes otherwise",
    )
    store_batch_frames: int = Field(
        16,
        gt=0,
        description="group commit: frames queued for the store are written in one transaction, up to this many "
        "(a frame never waits for others when nothing is queued behind it); 1: one transaction per frame",
    )
    timing_dir: str | None = Field(
        None, description="benchmarks: each worker keeps every frame's stage marks and writes them here when it stops"
    )

    @field_validator("workers")
    @classmethod
    def _positive_workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("pipeline.workers must be >= 1 or 'auto'")
        return value

    @field_validator("gpus")
    @classmethod
    def _gpu_indices(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 0 or len(set(value)) != len(value)):
            raise ValueError("pipeline.gpus must list distinct GPU indices >= 0 (or be null)")
        return value


class ValidationConfig(_Section):
    """Bounds a frame's headers must keep, besides the line's geometry (camera, shot, frames per car)."""

    max_future_s: float = Field(
        30.0, ge=0, description="a frame captured further ahead of this consumer's clock is refused (clock skew)"
    )
    max_age_s: float = Field(
        7 * 86400.0, gt=0, description="a frame captured longer ago is refused (Kafka keeps 7 days by default)"
    )
    max_deadline_s: float = Field(3600.0, gt=0, description="deadline_at may be at most this far after captured_at")


class OverdueConfig(_Section):
    """Cars whose deadline passed with frames missing: checked by every edge consumer, reported once."""

    check_interval_s: float = Field(5.0, gt=0, description="how often an edge consumer looks for overdue cars")
    grace_s: float = Field(5.0, ge=0, description="a car is overdue this long after its deadline with frames missing")


class HealthConfig(_Section):
    """/healthz, /readyz and the lag gauges served next to /metrics (`--metrics-port`)."""

    lag_interval_s: float = Field(
        5.0, gt=0, description="how often consumer lag per partition is refreshed (librdkafka statistics)"
    )
    stall_s: float = Field(120.0, gt=0, description="/readyz fails when no frame was handled for this long while lag > 0")
    db_check_s: float = Field(10.0, gt=0, description="/readyz checks the database at most this often")


class LoggingConfig(_Section):
    format: Literal["text", "json"] = Field(
        "text", description="text (rich on a terminal, plain lines otherwise) or json (one object per line)"
    )


class RetentionConfig(_Section):
    """How long results are kept; `inspection db prune` deletes what is older (None: keep)."""

    rows_days: float | None = Field(None, gt=0, description="cars, frames, detections and rejected messages older than this")
    images_days: float | None = Field(None, gt=0, description="frame image files older than this (rows stay, image_uri cleared)")


class ReviewConfig(_Section):
    """The analyst's review queue (inspection/review): how many frames a queue page holds and its mix."""

    queue_size: int = Field(50, gt=0, le=1000, description="frames per queue page")
    ng_share: float = Field(0.5, ge=0.0, le=1.0, description="share of NG cars' frames (taken first)")
    near_share: float = Field(0.3, ge=0.0, le=1.0, description="share of frames with a box near the operating threshold")
    ok_share: float = Field(0.2, ge=0.0, le=1.0, description="share of a random sample of OK cars' frames (missed defects)")
    near_band: float = Field(0.1, gt=0.0, le=1.0, description="'near': score within threshold + this")
    sample_seed: int = Field(1, ge=1, description="the OK sample's order (a hash of frame id and this seed)")


def _reviewers(value: object) -> object:
    """`name=sha256` lines or commas (`inspection review token NAME`) -> Reviewers; empty: None."""
    if not isinstance(value, str):
        return value
    try:
        return Reviewers.parse(value) if value.strip() else None
    except ReviewerConfigError as exc:
        raise ValueError(str(exc)) from None


class DashboardSettings(_Section):
    """The dashboard process (`inspection dashboard`; flags override); it reads store.url (read-only),
    store.image_dir, line.cameras, grid, review and detect.score_threshold from their sections."""

    host: str = Field("127.0.0.1", description="address to bind; anything but loopback needs a token")
    port: int = Field(8050, ge=0, le=65535)
    token: str | None = Field(None, description="required on every request when set; required to bind a non-loopback address")
    reviewers: Annotated[Reviewers | None, NoDecode, BeforeValidator(_reviewers)] = Field(
        None, description="name=sha256 lines or commas (`inspection review token NAME`); none: reviewing is off"
    )
    thumbs_dir: Path | None = Field(None, description="thumbnail cache folder; None: the user cache directory")
    poll_s: float = Field(2.0, gt=0, le=5.0, description="how often open pages check for new results (<= 5 s)")
    detections_window_s: float = Field(
        3600.0, gt=0, description="the detections page's default time range, ending at the newest capture"
    )


class Settings(_Section):
    grid: GridConfig = GridConfig()
    model: ModelConfig = ModelConfig()
    detect: DetectConfig = DetectConfig()
    stitch: StitchConfig = StitchConfig()
    kafka: KafkaConfig = KafkaConfig()
    store: StoreConfig = StoreConfig()
    line: LineConfig = LineConfig()
    pipeline: PipelineConfig = PipelineConfig()
    validation: ValidationConfig = ValidationConfig()
    overdue: OverdueConfig = OverdueConfig()
    health: HealthConfig = HealthConfig()
    logging: LoggingConfig = LoggingConfig()
    retention: RetentionConfig = RetentionConfig()
    review: ReviewConfig = ReviewConfig()
    dashboard: DashboardSettings = DashboardSettings()
    inspection: InspectionConfig = InspectionConfig()
    signal: SignalConfig = SignalConfig()

    @model_validator(mode="after")
    def _rules_fit_the_model_and_frame(self) -> Settings:
        from .detect.registry import load_spec

        names = load_spec(self.model.name).class_names.values()
        try:
            self.inspection.rules.check_against(names, self.grid.frame_width, self.grid.frame_height, self.line.cameras)
        except ValueError as exc:
            raise ValueError(f"inspection.rules: {exc}") from None
        return self

    def digest(self) -> str:
        """Stable short hash of the whole configuration (recorded on each run row)."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and what is allowed."""


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _dotted_to_nested(dotted: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over `Settings`: INSPECTION__SECTION__KEY, nested by `__`,
    lists and mappings as JSON, `null` for None; over a given mapping instead of os.environ (tests)."""

    def __init__(self, environ: dict[str, str]) -> None:
        self._environ = environ
        super().__init__(
            Settings,  # type: ignore[arg-type]  # the source reads fields and types; Settings() itself stays env-free
            case_sensitive=False,
            env_prefix=ENV_PREFIX,
            env_nested_delimiter="__",
            env_parse_none_str="null",
        )

    def _load_env_vars(self) -> Any:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def _known_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys |= _known_keys(field.annotation, f"{prefix}{name}.")
    return keys


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """`INSPECTION__MODEL__BACKEND=onnxruntime` -> {"model": {"backend": "onnxruntime"}}; a variable with the
    prefix that names no setting is refused (a typo must not be ignored silently)."""
    known = _known_keys(Settings)
    for old, new in RENAMED_ENV.items():
        if old in environ:
            raise ConfigError(f"environment {old} is now {new}: set that instead")
    for key in environ:
        if key.upper().startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower().replace("__", ".") not in known:
            raise ConfigError(f"environment {key} names no setting (the README's settings table lists them)")
    try:
        return _Environment(environ)()
    except SettingsError as exc:  # e.g. a list that is not JSON
        raise ConfigError(f"environment: {exc} (lists and mappings are JSON, e.g. [0, 1])") from None


def _format_error(err: ValidationError, source: str) -> str:
    """One line for one problem ("invalid configuration (site.yaml): model.backend: ..."), else one line per key."""
    lines = [f"invalid configuration ({source}):"]
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "<root>"
        msg = item["msg"].removeprefix("Value error, ")
        ctx = item.get("ctx") or {}
        if "expected" in ctx:
            msg = f"{msg} (allowed: {ctx['expected']})"
        got = item.get("input")
        if not isinstance(got, dict):
            msg = f"{msg}; got {got!r}"
        lines.append(f"  {key}: {msg}")
    if len(lines) == 2:
        return f"{lines[0]} {lines[1].strip()}"
    return "\n".join(lines)


def load_settings(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Defaults <- YAML file <- environment (INSPECTION__SECTION__KEY) <- overrides (dotted keys).

    Raises ConfigError naming the offending key and the allowed values.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections, got {type(loaded).__name__}")
        data = loaded
        source = str(p)
    data = _deep_merge(data, _env_overrides(dict(os.environ if environ is None else environ)))
    if overrides:
        data = _deep_merge(data, _dotted_to_nested({k: v for k, v in overrides.items() if v is not None}))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None
