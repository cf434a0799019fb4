from pathlib import Path

import pytest
import yaml

from inspection.config import ConfigError, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_default_yaml_equals_embedded_defaults():
    assert load_settings(REPO / "configs" / "default.yaml", environ={}) == Settings()


@pytest.mark.parametrize("profile", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_profile_validates(profile):
    load_settings(profile, environ={})


def test_bad_backend_names_key_and_allowed_values(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"model": {"backend": "tensorflow"}}))
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    text = str(err.value)
    assert "model.backend" in text and "'onnxruntime'" in text and "'tensorrt'" in text and "tensorflow" in text


def test_the_retired_opencv_backend_says_what_to_use(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"model": {"backend": "opencv"}}))
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    text = str(err.value)
    assert "model.backend" in text and "retired" in text and "model.backend=onnxruntime" in text


def test_unknown_key_is_rejected(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text("grid:\n  tile_sise: 300\n")
    with pytest.raises(ConfigError, match="grid.tile_sise"):
        load_settings(path, environ={})


def test_out_of_range_and_inconsistent_values():
    with pytest.raises(ConfigError, match="detect.score_threshold"):
        load_settings(overrides={"detect.score_threshold": 1.5}, environ={})
    with pytest.raises(ConfigError, match="overlap"):
        load_settings(overrides={"grid.overlap": 300}, environ={})


def test_env_and_overrides_layer_on_file(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text("model:\n  backend: onnxruntime\nkafka:\n  topic: cam\n")
    s = load_settings(path, environ={"INSPECTION__KAFKA__TOPIC": "line7"}, overrides={"detect.nms_iou": 0.5})
    assert (s.model.backend, s.kafka.topic, s.detect.nms_iou) == ("onnxruntime", "line7", 0.5)


def test_missing_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_settings(bad, environ={})


def test_digest_changes_with_config():
    assert Settings().digest() != load_settings(overrides={"detect.nms_iou": 0.5}, environ={}).digest()


def test_the_dashboard_section_and_the_renamed_database_variable(tmp_path):
    digest = "a" * 64
    settings = load_settings(
        environ={"INSPECTION__DASHBOARD__PORT": "9000", "INSPECTION__DASHBOARD__REVIEWERS": f"alice={digest},bob={'b' * 64}"}
    )
    assert settings.dashboard.port == 9000 and settings.dashboard.reviewers.identify("x") is None
    assert [name for name, _ in settings.dashboard.reviewers.hashes] == ["alice", "bob"]
    assert load_settings(environ={}).dashboard.reviewers is None  # reviewing off
    with pytest.raises(ConfigError, match="dashboard.reviewers: reviewer entry 'alice'"):
        load_settings(environ={"INSPECTION__DASHBOARD__REVIEWERS": "alice"})
    with pytest.raises(ConfigError, match="^environment INSPECTION_DB is now INSPECTION__STORE__URL: set that instead$"):
        load_settings(environ={"INSPECTION_DB": "sqlite:///x.db"})


def test_a_poll_interval_below_the_session_timeout_is_one_error_naming_both(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"session_timeout_ms": 6000, "max_poll_interval_ms": 3000}}))
    with pytest.raises(ConfigError, match=r"max_poll_interval_ms \(3000\) must be at least kafka.session_timeout_ms \(6000\)"):
        load_settings(path, environ={})
    path.write_text(yaml.safe_dump({"kafka": {"max_poll_interval_ms": 15000}}))
    from inspection.kafka.admin import consumer_config

    assert consumer_config("127.0.0.1:9092", load_settings(path, environ={}).kafka)["max.poll.interval.ms"] == 15000
