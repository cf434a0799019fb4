"""Names vulture cannot see used (`vulture` in .ci/run; config in pyproject's [tool.vulture]).

Commands (typer) and routes (FastAPI) are skipped by their decorators (ignore_decorators). What
is listed here is called by a framework, read from outside the package, or written out as data.
"""

# ruff: noqa
# fmt: off
_ = object()

# Frameworks call these: SQLAlchemy events and TypeDecorator, pydantic, http.server, uvicorn,
# onnxruntime's calibration reader and session options, FastAPI handlers, Alembic revisions, pydantic-settings sources.
_read_only; _on_connect; _on_begin; _.isolation_level
impl; cache_ok; _.process_bind_param; _.process_result_value
model_config; _._registered; _._not_retired; _._load_env_vars
_.do_GET; _.log_message; _.daemon_threads
_.install_signal_handlers; _.should_exit
_.get_next; _.intra_op_num_threads
_root; _not_found; docs
down_revision; branch_labels; depends_on; downgrade
_._positive_workers; _._gpu_indices; _._not_retired
# SAHI calls these on its DetectionModel subclass (sahi_adapter.py)
_.load_model; _.set_model; _.set_device; _.perform_inference; _.perform_batch_inference; _._batch_images
_._create_object_prediction_list_from_original_predictions; _._object_prediction_list_per_image

# Kept alive by reference (TensorRT runtime outlives its engine); protobuf descriptor fields read by name.
_._runtime; _.oneof_index; _.map_entry

# Data written out (JSON reports, API responses, dataclass fields read by notebooks and the dashboard).
cars_today; completed_today; missed_today; overdue_today; miss_rate_today; frames_per_s
parked_frames_today; rejected_today; frame_ms_min; jpeg_bytes_mean; _.median_car_latency_s
frame_detections; tile_max_dets; row_id; cars_late; frame_errors; onnx_sha256
dropped_annotations; payload_bytes; exit_code; message_key

# The analyst's and notebooks' API (notebooks/*.ipynb, Grafana panels are built from ALL_QUERIES).
ALL_QUERIES; engine_from_env; read_df; find_bench_files; to_dataframe

# issue 19: pydantic validators, the `rules check` command (a sub-typer), OPC UA event fields set by
# name, columns written for analysts, the demo signal's port and BoxOutcome.ignored read by tests.
rules_check; _._rules_fit_the_model_and_frame; _._closed; _._positive; _._consistent; _._secure_off_loopback
_.CarId; _.RulesVersion; decided_at; last_error; rules_hash; mqtt_port; _.ignored
# The review loop (issue 20): pydantic validators, API/DB fields written out as data.
_._reason; _._valid; verdict_seen; rules_version; last_review; reject_reasons; missed_reasons; shadow_frame_id
swapped_at; from_model; to_model
